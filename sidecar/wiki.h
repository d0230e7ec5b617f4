/* wiki.h - one wiki of the farm, as discovery found it. Leaf module. */
#ifndef JD_WIKI_H
#define JD_WIKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

/* What the scanner last wrote to this wiki's jd_wiki row (scanner.c decides from it
 * whether a new scan's figures need writing). All zero: nothing written yet. */
struct wiki_written {
	uint64_t light; /* fingerprint of the figures every scan reads */
	uint64_t full;  /* fingerprint of those only a full scan reads (0: none written) */
	int64_t at_ms;  /* monotonic ms of the last write */
	bool ready;     /* the row written showed ready jobs */
};

/* The strings live in the same allocation as the struct (one block per wiki: a farm of
 * 20,000 wikis is held twice, by the scanner and the scheduler, as one shared set), and
 * never change once made. */
struct wiki {
	char *domain;                /* Host header MediaWiki picks the wiki by */
	char *dbname;                /* validated identifier: util_is_db_name */
	char *table_prefix;          /* validated identifier, MediaWiki's $wgDBprefix */
	char *secret;                /* $wgSecretKey; never logged */
	char *db_server;             /* its database server, "host[:port]" (discovery's
				      * optional fifth column); NULL: [scan_db]'s */
	struct wiki_written written; /* the scanner's alone (scanner.c); copies start at zero */
	_Atomic int holders;         /* lists and tickets sharing it: wiki_ref, wiki_free */
};

/* A new wiki with copies of w's strings (not its `written`; db_server may be NULL), one holder; NULL on
 * allocation failure. */
struct wiki *wiki_dup(const struct wiki *w);
/* One more holder of w (a second list, a ticket): the same wiki, no copy. Returns w. */
struct wiki *wiki_ref(struct wiki *w);
/* Lets go of w: the last holder frees it, its secret cleared first. Accepts NULL. */
void wiki_free(struct wiki *w);

struct wiki_list {
	struct wiki **items;
	size_t len;
};

void wiki_list_free(struct wiki_list *l);

#endif
