/* discovery.h - which wikis exist: the [discovery] query on the platform database.
 *
 * The query returns, per wiki: domain, database name, table prefix, secret key, and
 * optionally the wiki's database server ("host[:port]"; NULL or '' for [scan_db]'s). Rows
 * are checked before anything else uses them (identifiers go into SQL, the domain into
 * a Host header, the server gets the scan's login: only a server config_server_allowed
 * passes, named canonically); a bad row is logged once while it stays bad, and
 * skipped. */
#ifndef JD_DISCOVERY_H
#define JD_DISCOVERY_H

#include "config.h"
#include "wiki.h"

struct db; /* db.h */

struct discovery;

struct discovery *discovery_new(const struct config *cfg);
void discovery_free(struct discovery *d);

/* Runs the query. Returns 0 and the good rows in *out (caller frees with
 * wiki_list_free), or -EIO with err when the query itself failed (the caller keeps
 * its previous list). Logs bad rows itself. */
int discovery_run(struct discovery *d, struct db *db, struct wiki_list *out, char *err,
		  size_t errlen);

/* Runs the query and finds one wiki in it, for a command about that wiki: 0 and *out (a
 * copy; the caller frees it with wiki_free), -ENOENT when the query does not list that
 * domain, -EIO when the query failed, -ENOMEM; err says which. Domains match byte for
 * byte, as discovery lists them (the Host header sent, the coordination tables' key):
 * a spelling that differs only in case or a trailing dot is refused, and err names the
 * listed one. */
int discovery_find(struct discovery *d, struct db *db, const char *domain, struct wiki **out,
		   char *err, size_t errlen);

/* How many rows the last successful run skipped (each logged as a bad row). */
size_t discovery_skipped(const struct discovery *d);

#endif
