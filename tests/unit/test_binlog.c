/* test_binlog.c - the binary log feed's endpoint (which server, which credentials, only
 * allowed servers), its status without a feed, and its parsing: which table an INSERT
 * statement writes (QUERY events in STATEMENT/MIXED format), the (database, table) ->
 * wiki map (TABLE_MAP events in ROW format), and ROTATE events read from their raw bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "binlog.h"

struct insert_case {
	const char *sql;
	const char *db;    /* NULL: unqualified */
	const char *table; /* NULL: not an INSERT/REPLACE */
};

static const struct insert_case insert_cases[] = {
	/* MediaWiki's JobQueueDB push, with the comment Database::query prefixes. */
	{ "/* JobQueueDB::doBatchPush 127.0.0.1 */ INSERT IGNORE INTO `mwt_0a1b_job` "
	  "(job_cmd,job_namespace) VALUES ('null',-1)",
	  NULL, "mwt_0a1b_job" },
	/* ... as MariaDB 10.11 logged MediaWiki 1.39's NullJob push in MIXED format. */
	{ "INSERT /* JobQueueDB::doBatchPush  */ INTO `mwt_b7134c617c_job` (job_cmd,job_namespace)"
	  " VALUES ('null',-1)",
	  NULL, "mwt_b7134c617c_job" },
	{ "INSERT INTO `mwdb_1`.`mwt_1_job` (job_cmd) VALUES ('x')", "mwdb_1", "mwt_1_job" },
	{ "insert into mwdb_1.mwt_1_job values (1)", "mwdb_1", "mwt_1_job" },
	{ "INSERT INTO job VALUES (1)", NULL, "job" },
	{ "INSERT job VALUES (1)", NULL, "job" },
	{ "INSERT LOW_PRIORITY IGNORE INTO `job` SET job_cmd = 'x'", NULL, "job" },
	{ "INSERT DELAYED INTO job VALUES (1)", NULL, "job" },
	{ "INSERT HIGH_PRIORITY INTO job VALUES (1)", NULL, "job" },
	{ "REPLACE INTO `d`.`job` VALUES (1)", "d", "job" },
	{ "REPLACE LOW_PRIORITY job VALUES (1)", NULL, "job" },
	{ "  \n\tINSERT\nINTO\n`job`(a) VALUES (1)", NULL, "job" },
	{ "INSERT INTO`job`VALUES(1)", NULL, "job" },
	{ "INSERT INTO `d` . `job` VALUES (1)", "d", "job" },
	{ "INSERT /* x */ INTO /* y */ `d`/* z */.`job` VALUES (1)", "d", "job" },
	{ "-- a comment\nINSERT INTO job VALUES (1)", NULL, "job" },
	{ "# a comment\nINSERT INTO job VALUES (1)", NULL, "job" },
	{ "INSERT INTO \"d\".\"job\" VALUES (1)", "d", "job" },
	{ "INSERT INTO `we``ird` VALUES (1)", NULL, "we``ird" },
	{ "INSERT INTO $t VALUES (1)", NULL, "$t" },
	/* Not inserts, or nothing to read. */
	{ "UPDATE `job` SET job_token = 'x' LIMIT 1", NULL, NULL },
	{ "DELETE FROM `job` WHERE job_id = 1", NULL, NULL },
	{ "BEGIN", NULL, NULL },
	{ "COMMIT", NULL, NULL },
	{ "INSERTED INTO job VALUES (1)", NULL, NULL },
	{ "REPLACEMENT job", NULL, NULL },
	{ "SELECT 'INSERT INTO job'", NULL, NULL },
	{ "/* INSERT INTO job */ UPDATE job SET a = 1", NULL, NULL },
	{ "/* unterminated INSERT INTO job", NULL, NULL },
	{ "INSERT INTO", NULL, NULL },
	{ "INSERT INTO `job", NULL, NULL },
	{ "INSERT INTO ``", NULL, NULL },
	{ "INSERT INTO `d`.", NULL, NULL },
	{ "INSERT INTO (a) VALUES (1)", NULL, NULL },
	{ "", NULL, NULL },
};

static void test_insert_target(void **state)
{
	int bad = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(insert_cases) / sizeof(insert_cases[0]); i++) {
		const struct insert_case *c = &insert_cases[i];
		const char *db = "unset", *table = "unset";
		size_t dblen = 99, tablelen = 99;
		bool got = binlog_insert_target(c->sql, strlen(c->sql), &db, &dblen, &table,
						&tablelen);
		if (got != (c->table != NULL)) {
			print_error("case %zu \"%s\": got %d\n", i, c->sql, got);
			bad++;
			continue;
		}
		if (!got)
			continue;
		if (tablelen != strlen(c->table) || memcmp(table, c->table, tablelen) != 0 ||
		    (c->db == NULL ? db != NULL
				   : (db == NULL || dblen != strlen(c->db) ||
				      memcmp(db, c->db, dblen) != 0))) {
			print_error("case %zu \"%s\": db %.*s table %.*s\n", i, c->sql,
				    db ? (int)dblen : 4, db ? db : "NULL", (int)tablelen, table);
			bad++;
		}
	}
	if (bad)
		fail_msg("%d insert cases wrong", bad);
}

/* The statement is a counted string: a table name ending at the buffer's end is read
 * without running past it. */
static void test_insert_target_counted(void **state)
{
	const char sql[] = "INSERT INTO job_past_the_counted_length";
	const char *db, *table;
	size_t dblen, tablelen;

	(void)state;
	assert_true(binlog_insert_target(sql, strlen("INSERT INTO job"), &db, &dblen, &table,
					 &tablelen));
	assert_null(db);
	assert_int_equal(tablelen, 3);
	assert_memory_equal(table, "job", 3);
}

static struct wiki *mkwiki(const char *domain, const char *db, const char *prefix)
{
	const struct wiki tmpl = { .domain = (char *)domain,
				   .dbname = (char *)db,
				   .table_prefix = (char *)prefix,
				   .secret = (char *)"s" };
	struct wiki *w = wiki_dup(&tmpl);

	assert_non_null(w);
	return w;
}

static const char *find(const struct binlog_map *m, const char *db, const char *table)
{
	return binlog_map_find(m, db, strlen(db), table, strlen(table));
}

static void test_map(void **state)
{
	struct wiki *items[4];
	struct wiki_list list = { items, 4 };
	struct binlog_map *m;

	(void)state;
	/* Discovery order, not sorted; two wikis may share a database (prefixes differ). */
	items[0] = mkwiki("c.example", "mwdb_c", "mwt_c_");
	items[1] = mkwiki("a.example", "mwdb_a", "mwt_a_");
	items[2] = mkwiki("b1.example", "shared", "b1_");
	items[3] = mkwiki("b2.example", "shared", "b2_");
	m = binlog_map_new(&list);
	assert_non_null(m);
	assert_string_equal(find(m, "mwdb_a", "mwt_a_job"), "a.example");
	assert_string_equal(find(m, "mwdb_c", "mwt_c_job"), "c.example");
	assert_string_equal(find(m, "shared", "b1_job"), "b1.example");
	assert_string_equal(find(m, "shared", "b2_job"), "b2.example");
	/* Other tables of a wiki, other databases, near misses. */
	assert_null(find(m, "mwdb_a", "mwt_a_page"));
	assert_null(find(m, "mwdb_a", "mwt_a_jobs"));
	assert_null(find(m, "mwdb_a", "mwt_a_jo"));
	assert_null(find(m, "mwdb_a", "mwt_c_job"));
	assert_null(find(m, "mwdb_", "mwt_a_job"));
	assert_null(find(m, "MWDB_A", "mwt_a_job"));
	assert_null(find(m, "mwdb_a", "MWT_A_JOB"));
	assert_null(find(m, "", ""));
	/* Counted strings: the event's names are not NUL-terminated. */
	assert_string_equal(binlog_map_find(m, "mwdb_aXX", 6, "mwt_a_jobYY", 9), "a.example");
	assert_null(binlog_map_find(m, NULL, 0, "mwt_a_job", 9));
	/* The map keeps copies: the list may go. */
	for (int i = 0; i < 4; i++)
		wiki_free(items[i]);
	assert_string_equal(find(m, "shared", "b2_job"), "b2.example");
	binlog_map_free(m);
	binlog_map_free(NULL);
}

static void test_map_empty(void **state)
{
	struct wiki_list list = { NULL, 0 };
	struct binlog_map *m = binlog_map_new(&list);

	(void)state;
	assert_non_null(m);
	assert_null(find(m, "mwdb_a", "mwt_a_job"));
	assert_null(binlog_map_find(NULL, "a", 1, "b", 1));
	binlog_map_free(m);
}

/* A ROTATE event as mariadb_rpl_fetch hands it over: the OK byte, the 19-byte header,
 * the 8-byte position, the name, and with checksums a CRC32 (not checked here). */
static size_t mkrotate(unsigned char *out, const char *name, unsigned long long pos, bool checksum)
{
	size_t namelen = strlen(name);
	uint32_t size = (uint32_t)(19 + 8 + namelen + (checksum ? 4 : 0));
	unsigned char *ev = out + 1;

	memset(out, 0, 1 + size);
	ev[4] = 4; /* ROTATE_EVENT */
	for (int i = 0; i < 4; i++)
		ev[9 + i] = (unsigned char)(size >> (8 * i));
	for (int i = 0; i < 8; i++)
		ev[19 + i] = (unsigned char)(pos >> (8 * i));
	memcpy(ev + 27, name, namelen);
	if (checksum)
		memcpy(ev + 27 + namelen, "\xde\xad\xbe\xef", 4);
	return 1 + size;
}

static void test_rotate(void **state)
{
	unsigned char raw[256];
	char file[64];
	unsigned long long pos = 0;
	size_t len;

	(void)state;
	len = mkrotate(raw, "binlog.000002", 4, true);
	assert_true(binlog_parse_rotate(raw, len, true, file, sizeof(file), &pos));
	assert_string_equal(file, "binlog.000002");
	assert_int_equal(pos, 4);
	len = mkrotate(raw, "mysql-bin.123456", 0x0102030405ull, false);
	assert_true(binlog_parse_rotate(raw, len, false, file, sizeof(file), &pos));
	assert_string_equal(file, "mysql-bin.123456");
	assert_true(pos == 0x0102030405ull);
	/* With the checksum flag wrong, the name would take the CRC's bytes: refused. */
	len = mkrotate(raw, "binlog.000002", 4, true);
	assert_false(binlog_parse_rotate(raw, len, false, file, sizeof(file), &pos));
	/* Truncated, not a rotate, no OK byte, a name too long for the buffer. */
	assert_false(binlog_parse_rotate(raw, len - 5, true, file, sizeof(file), &pos));
	assert_false(binlog_parse_rotate(raw, 10, true, file, sizeof(file), &pos));
	assert_false(binlog_parse_rotate(NULL, 0, true, file, sizeof(file), &pos));
	raw[0] = 0xff;
	assert_false(binlog_parse_rotate(raw, len, true, file, sizeof(file), &pos));
	len = mkrotate(raw, "binlog.000002", 4, true);
	raw[1 + 4] = 2; /* QUERY_EVENT */
	assert_false(binlog_parse_rotate(raw, len, true, file, sizeof(file), &pos));
	len = mkrotate(raw, "binlog.000002", 4, true);
	assert_false(binlog_parse_rotate(raw, len, true, file, 8, &pos));
	/* A name with a path or a quote in it is not one we would send back. */
	len = mkrotate(raw, "../x", 4, true);
	assert_false(binlog_parse_rotate(raw, len, true, file, sizeof(file), &pos));
	len = mkrotate(raw, "a'b", 4, true);
	assert_false(binlog_parse_rotate(raw, len, true, file, sizeof(file), &pos));
}

static struct config *load_config(const char *text)
{
	char path[] = "/tmp/jd-test-binlog-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg = NULL;
	struct buf err;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	buf_init(&err);
	if (config_load(path, &cfg, &err) != 0)
		fail_msg("config: %s", err.data ? err.data : "?");
	buf_release(&err);
	unlink(path);
	return cfg;
}

/* A feed's credentials and server: [binlog]'s for the default server, the same user
 * and password on a named server's host:port, and only for allowed, canonical names. */
static void test_endpoint_for(void **state)
{
	struct config *cfg = load_config("[scan_db]\nhost = db1\nport = 3307\n"
					 "user = scan\npassword = s\n"
					 "[scan]\nallowed_servers = DB2, 10.0.0.7:3310\n"
					 "[server 10.0.0.8:3306]\nuser = scan8\npassword = s8\n"
					 "binlog_user = feed8\nbinlog_password = f8\n"
					 "[binlog]\nuser = feed\npassword = pw\nsocket = /s\n"
					 "connect_timeout = 3\n");
	struct binlog_endpoint ep;

	(void)state;
	assert_int_equal(binlog_endpoint_for(cfg, NULL, &ep), 0);
	assert_string_equal(ep.ep.host, "db1");
	assert_int_equal(ep.ep.port, 3307);
	assert_string_equal(ep.ep.socket, "/s");
	/* [binlog]'s own server named: its own endpoint, socket and all. */
	assert_int_equal(binlog_endpoint_for(cfg, "db1:3307", &ep), 0);
	assert_string_equal(ep.ep.socket, "/s");
	assert_int_equal(binlog_endpoint_for(cfg, "db2:3306", &ep), 0);
	assert_string_equal(ep.ep.host, "db2");
	assert_int_equal(ep.ep.port, 3306);
	assert_string_equal(ep.ep.socket, "");
	assert_string_equal(ep.ep.user, "feed");
	assert_string_equal(ep.ep.password, "pw");
	assert_int_equal(ep.ep.connect_timeout, 3);
	assert_int_equal(binlog_endpoint_for(cfg, "10.0.0.7:3310", &ep), 0);
	assert_string_equal(ep.ep.host, "10.0.0.7");
	assert_int_equal(ep.ep.port, 3310);
	/* A [server] section's own feed login. */
	assert_int_equal(binlog_endpoint_for(cfg, "10.0.0.8:3306", &ep), 0);
	assert_string_equal(ep.ep.user, "feed8");
	assert_string_equal(ep.ep.password, "f8");
	/* Not allowed (another port, another host), or not canonical. */
	assert_int_equal(binlog_endpoint_for(cfg, "db2:3307", &ep), -EPERM);
	assert_int_equal(binlog_endpoint_for(cfg, "evil:3306", &ep), -EPERM);
	assert_int_equal(binlog_endpoint_for(cfg, "DB2", &ep), -EINVAL);
	assert_int_equal(binlog_endpoint_for(cfg, "db2", &ep), -EINVAL);
	assert_int_equal(binlog_endpoint_for(cfg, "", &ep), -EINVAL);
	config_free(cfg);
}

/* No feed (it could not be started) reads as failed, never as following. */
static void test_status_of_no_feed(void **state)
{
	struct binlog_status st;

	(void)state;
	binlog_status(NULL, &st);
	assert_int_equal(st.state, BINLOG_FAILED);
	assert_string_equal(st.why, "no feed");
	assert_false(binlog_following(NULL));
	assert_int_equal(binlog_follows(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_target),
		cmocka_unit_test(test_insert_target_counted),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_map_empty),
		cmocka_unit_test(test_rotate),
		cmocka_unit_test(test_endpoint_for),
		cmocka_unit_test(test_status_of_no_feed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
