/* wiki.c - see wiki.h. */
#include "wiki.h"

#include <stdlib.h>
#include <string.h>

void wiki_free(struct wiki *w)
{
	if (w == NULL || atomic_fetch_sub(&w->holders, 1) > 1)
		return;
	/* Freed wikis are cleared here and discovery clears libmariadb's result rows; what
	 * remains are the live wikis and, until the next statement overwrites them, the
	 * connection's read buffers. */
	explicit_bzero(w->secret, strlen(w->secret));
	free(w);
}

struct wiki *wiki_ref(struct wiki *w)
{
	atomic_fetch_add(&w->holders, 1);
	return w;
}

struct wiki *wiki_dup(const struct wiki *w)
{
	const char *from[4] = { w->domain, w->dbname, w->table_prefix, w->secret };
	size_t len[4], total = sizeof(struct wiki);
	struct wiki *c;
	char *p;

	for (int i = 0; i < 4; i++) {
		len[i] = strlen(from[i]) + 1;
		total += len[i];
	}
	c = calloc(1, total);
	if (c == NULL)
		return NULL;
	p = (char *)(c + 1);
	for (int i = 0; i < 4; i++) {
		memcpy(p, from[i], len[i]);
		*(i == 0   ? &c->domain
		  : i == 1 ? &c->dbname
		  : i == 2 ? &c->table_prefix
			   : &c->secret) = p;
		p += len[i];
	}
	atomic_init(&c->holders, 1);
	return c;
}

void wiki_list_free(struct wiki_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->len; i++)
		wiki_free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->len = 0;
}
