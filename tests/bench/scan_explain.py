#!/usr/bin/python3
"""EXPLAIN of one wiki's part of the scan statement, before (main up to issue 13) and after,
on a job table of 20,000 ready rows and 5 claims, with handler counters. Prints Markdown.

    /usr/bin/python3 tests/bench/scan_explain.py /path/to/farm/mysql.sock

Needs a farm's MariaDB (tests/farm: the farm_template database); creates and drops
the database jdexplain."""
import pymysql, sys
c = pymysql.connect(unix_socket=sys.argv[1], user="root", password="", autocommit=True)
cur = c.cursor()
cur.execute("CREATE DATABASE IF NOT EXISTS jdexplain")
cur.execute("DROP TABLE IF EXISTS jdexplain.mw_job")
cur.execute("CREATE TABLE jdexplain.mw_job LIKE farm_template.mwt_template_job")
# 20,000 ready rows of 2 types, 5 claimed (2 orphaned), as a busy wiki has.
cur.execute("INSERT INTO jdexplain.mw_job (job_cmd, job_namespace, job_title, job_timestamp, job_params, job_random, job_sha1)"
            " SELECT IF(seq % 2, 'refreshLinks', 'htmlCacheUpdate'), 0, CONCAT('P', seq), DATE_FORMAT(UTC_TIMESTAMP(), '%Y%m%d%H%i%s'), 'a:0:{}', seq, '' FROM jdexplain.seq_1_to_20000")
cur.execute("UPDATE jdexplain.mw_job SET job_token = MD5(job_id), job_token_timestamp = '20200101000000' WHERE job_id <= 5")
cur.execute("ANALYZE TABLE jdexplain.mw_job"); cur.fetchall()
d, p = "jdexplain", "mw_"
old_light = ("(SELECT 0, 'r', j.job_timestamp, NULL, NULL FROM `%s`.`%sjob` j JOIN (SELECT job_cmd, MIN(job_id) AS id FROM `%s`.`%sjob`"
             " WHERE job_token = '' GROUP BY job_cmd) m ON j.job_id = m.id)" % (d, p, d, p))
old_full = old_light + (" UNION ALL (SELECT 0, 'm', NULL, MAX(job_id), NULL FROM `%s`.`%sjob`)" % (d, p)) + (
    " UNION ALL (SELECT 0, 'c', MIN(j.job_token_timestamp), COUNT(*), MIN(IF(j.job_token_timestamp < '20250101000000', j.job_timestamp, NULL)) FROM `%s`.`%sjob` j"
    " WHERE j.job_cmd IN (SELECT c.job_cmd FROM (SELECT job_cmd, MAX(job_token) AS t FROM `%s`.`%sjob` GROUP BY job_cmd) c WHERE c.t > '')"
    " AND j.job_token > '' AND j.job_token_timestamp < '20250101000000' HAVING COUNT(*) > 0)" % (d, p, d, p))
new = "(SELECT 0, job_token, MIN(job_id), MAX(job_id), job_cmd FROM `%s`.`%sjob` GROUP BY job_cmd, job_token)" % (d, p)
cur.execute(new); rows = cur.fetchall()
ids = ",".join(str(r[2]) for r in rows if r[1] == b'')
claims = " OR ".join("(job_cmd = X'%s' AND job_token = X'%s')" % (r[4].hex(), r[1].hex()) for r in rows if r[1] != b'')
look = "(SELECT 0, job_id, job_timestamp, job_token, job_token_timestamp FROM `%s`.`%sjob` WHERE job_id IN (%s) OR %s)" % (d, p, ids, claims)
for name, q in (("before, light", old_light), ("before, full", old_full), ("after, every scan", new), ("after, lookup (wikis with jobs only; the claims part in full sweeps only)", look)):
    print("### " + name); print("```"); print(q); print("```"); print("")
    print("| id | select_type | table | type | key | key_len | rows | Extra |"); print("|---|---|---|---|---|---|---|---|")
    cur.execute("EXPLAIN " + q)
    cols = [x[0] for x in cur.description]
    for r in cur.fetchall():
        r = dict(zip(cols, r))
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (r["id"], r["select_type"], r["table"], r["type"], r["key"], r["key_len"], r["rows"], r["Extra"]))
    cur.execute("FLUSH STATUS")
    cur.execute(q); cur.fetchall()
    cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_key','Handler_read_next','Handler_read_first','Handler_read_last','Handler_read_rnd_next','Opened_tables','Handler_read_prev')")
    print(""); print("Handler counters: " + ", ".join("%s=%s" % r for r in cur.fetchall())); print("")
print("rows of the new statement:", rows)
cur.execute("DROP DATABASE jdexplain")
