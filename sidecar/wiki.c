/* wiki.c - see wiki.h. */
#include "wiki.h"

#include <stdlib.h>
#include <string.h>

void wiki_free(struct wiki *w)
{
	if (w == NULL)
		return;
	free(w->domain);
	free(w->dbname);
	free(w->table_prefix);
	if (w->secret != NULL) {
		/* Freed copies are cleared here and discovery clears libmariadb's result rows;
		 * what remains are the live copies and, until the next statement overwrites
		 * them, the connection's read buffers. */
		explicit_bzero(w->secret, strlen(w->secret));
		free(w->secret);
	}
	free(w);
}

struct wiki *wiki_dup(const struct wiki *w)
{
	struct wiki *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->domain = strdup(w->domain);
	c->dbname = strdup(w->dbname);
	c->table_prefix = strdup(w->table_prefix);
	c->secret = strdup(w->secret);
	if (!c->domain || !c->dbname || !c->table_prefix || !c->secret) {
		wiki_free(c);
		return NULL;
	}
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
