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
	/* db_server may be NULL ([scan_db]): it stays NULL in the copy. */
	const char *from[5] = { w->domain, w->dbname, w->table_prefix, w->secret, w->db_server };
	char **to[5];
	size_t len[5], total = sizeof(struct wiki);
	struct wiki *c;
	char *p;

	for (int i = 0; i < 5; i++) {
		len[i] = from[i] == NULL ? 0 : strlen(from[i]) + 1;
		total += len[i];
	}
	c = calloc(1, total);
	if (c == NULL)
		return NULL;
	to[0] = &c->domain;
	to[1] = &c->dbname;
	to[2] = &c->table_prefix;
	to[3] = &c->secret;
	to[4] = &c->db_server;
	p = (char *)(c + 1);
	for (int i = 0; i < 5; i++) {
		if (from[i] == NULL)
			continue;
		memcpy(p, from[i], len[i]);
		*to[i] = p;
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
