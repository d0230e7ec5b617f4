"""The push path ([binlog]) on a real farm whose MariaDB writes a binary log: a job
MediaWiki pushes on a cold wiki is run without waiting for the next scan (a 60 s
[scan] interval), in ROW and in MIXED/STATEMENT format; one feed per fleet (the scanner
lease holder's), handed over with the lease; and every fall-back (no grant, binary log
off, a purged position, the server restarted) logged once while draining goes on by
scanning."""

import os
import subprocess
import time

import pymysql
import pytest

from farm import temporary_farm
from sidecar import farm_ini, wait_until

WIKIS = ("wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test")
FEED_USER, FEED_PASSWORD = "jdbinlog", "blpass"
FOLLOWING = "binary log feed following"
STOPPED = "binary log feed stopped"
WOKEN = "woken wikis scanned"


def create_feed_user(farm, server=None):
    """The feed's user on the farm's main server, or on its add_db_server `server`."""
    for host in ("127.0.0.1", "localhost"):
        farm.sql("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (FEED_USER, host, FEED_PASSWORD),
                 server=server)
        # REPLICATION CLIENT is called BINLOG MONITOR since MariaDB 10.5.
        farm.sql("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '%s'@'%s'"
                 % (FEED_USER, host), server=server)


@pytest.fixture(scope="module")
def bl_farm():
    with temporary_farm("jdbinlog-", wikis=3, binlog_format="ROW") as f:
        create_feed_user(f)
        yield f


def ini(farm, scan_interval=60, **more):
    sections = {
        "sidecar": {"log_level": "debug", "shutdown_timeout": 10},
        # A pod killed by a failed test frees the scanner lease soon.
        "mediawiki": {"maxtime": 5, "timeout_allowance": 5},
        "coordination": {"lease_ttl": 15, "safety_margin": 2, "renew_interval": 3},
        "scan": {"interval": scan_interval, "full_interval": 60},
        "binlog": {"enabled": "true", "user": FEED_USER, "password": FEED_PASSWORD,
                   "heartbeat": 1, "retry_interval": 1},
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


def msgs(pod, msg):
    return [l for l in pod.lines() if l.get("msg") == msg]


def dump_threads(farm):
    return farm.sql("SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE command LIKE 'Binlog Dump%%'")[0][0]


def start_following(sidecars, farm, name="pod-a", **more):
    pod = sidecars(name, ini(farm, **more))
    pod.wait_for(lambda l: l.get("msg") == FOLLOWING, timeout=30, what="the feed")
    pod.wait_for(lambda l: l.get("msg") == "scan", timeout=30, what="the first scan")
    return pod


def assert_woken_and_run(pod, farm, domain, push):
    """Pushes with push(), then waits for the wiki's batch: it must come from a wake,
    with no scan in between (the next scan is a minute away)."""
    scans = len(msgs(pod, "scan"))
    start = len(pod.lines())
    push()
    batch = pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == domain
                         and l.get("jobs_ok", 0) >= 1, timeout=50,
                         what="a batch on " + domain)
    lines = pod.lines()
    upto = lines.index(batch)
    assert any(l.get("msg") == WOKEN and l.get("first") == domain for l in lines[start:upto]), \
        "no wake for %s before its batch" % domain
    assert len([l for l in lines[:upto] if l.get("msg") == "scan"]) == scans, \
        "a scan ran between the push and the batch"
    wait_until(lambda: farm.ready_jobs(domain) == 0, timeout=30, what="queue drained")


def binlog_events(farm):
    """(event type, info) of the current binary log file (info may hold binary bytes:
    read raw, decoded leniently)."""
    f = farm.sql("SHOW MASTER STATUS")[0][0]
    conn = pymysql.connect(unix_socket=farm.socket, user="root", password="",
                           use_unicode=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINLOG EVENTS IN '%s'" % f)
            return [(r[2].decode(), r[5].decode("utf-8", "replace")) for r in cur.fetchall()]
    finally:
        conn.close()


def test_row_format_wakes_a_cold_wiki(bl_farm, sidecars):
    farm = bl_farm
    farm.sql("SET GLOBAL binlog_format = 'ROW'")
    pod = start_following(sidecars, farm)
    line = msgs(pod, FOLLOWING)[0]
    assert line["binlog_format"] == "ROW" and line["file"].startswith("binlog.")
    # MediaWiki's own push (JobQueueDB: INSERT IGNORE into the prefixed job table).
    assert_woken_and_run(pod, farm, "wiki1.farm.test",
                         lambda: farm.push_null_jobs("wiki1.farm.test", 3))
    assert any(t == "Write_rows_v1" for t, _ in binlog_events(farm))
    # Claims (UPDATE) and deletions of the run woke nothing more.
    n = len(msgs(pod, WOKEN))
    time.sleep(1)
    assert len(msgs(pod, WOKEN)) == n
    assert pod.metrics()["jobdrainer_binlog_following"] == 1
    assert pod.metrics()["jobdrainer_binlog_wakes_total"] >= 1
    assert pod.stop() == 0


@pytest.mark.parametrize("fmt", ["MIXED", "STATEMENT"])
def test_statement_formats_wake_a_cold_wiki(bl_farm, sidecars, fmt):
    farm = bl_farm
    farm.sql("SET GLOBAL binlog_format = '%s'" % fmt)
    try:
        pod = start_following(sidecars, farm, name="pod-" + fmt.lower())
        # MediaWiki's INSERT (with its method in a comment after the keyword), unqualified,
        # in the wiki's database.
        assert_woken_and_run(pod, farm, "wiki2.farm.test",
                             lambda: farm.push_null_jobs("wiki2.farm.test", 3))
        w = farm.wiki("wiki2.farm.test")
        assert any(t == "Query" and "INSERT /* JobQueueDB::doBatchPush" in info
                   and "INTO `%s_job`" % w.prefix in info
                   for t, info in binlog_events(farm)), \
            "the push was not logged as a statement: this test did not test the QUERY path"
        # A qualified INSERT from another default database (the farm's root session).
        assert_woken_and_run(pod, farm, "wiki3.farm.test",
                             lambda: farm.insert_probe_jobs("wiki3.farm.test", 1))
        assert pod.stop() == 0
    finally:
        farm.sql("SET GLOBAL binlog_format = 'ROW'")


def test_one_feed_per_fleet_handed_over_with_the_scanner_lease(bl_farm, sidecars):
    farm = bl_farm
    a = start_following(sidecars, farm, name="pod-a")
    b = sidecars("pod-b", ini(farm))
    b.wait_for(lambda l: l.get("msg") == "discovery", what="pod-b up")
    time.sleep(2)
    assert msgs(b, FOLLOWING) == []
    assert dump_threads(farm) == 1
    assert a.stop() == 0
    # The lease is released at once on SIGTERM: pod-b scans and follows.
    b.wait_for(lambda l: l.get("msg") == FOLLOWING, timeout=60, what="pod-b's feed")
    wait_until(lambda: dump_threads(farm) == 1, timeout=20, what="one dump thread")
    b.wait_for(lambda l: l.get("msg") == "scan", timeout=30, what="pod-b's first scan")
    assert_woken_and_run(b, farm, "wiki1.farm.test",
                         lambda: farm.push_null_jobs("wiki1.farm.test", 2))
    assert b.stop() == 0


def test_missing_grant_is_logged_once_and_scanning_goes_on(bl_farm, sidecars):
    farm = bl_farm
    # The farm's sidecar user has SELECT grants only.
    pod = sidecars("pod-nogrant", ini(farm, scan_interval=2,
                                      binlog={"user": "jobdrainer", "password": "jdpass"}))
    line = pod.wait_for(lambda l: l.get("msg") == STOPPED, timeout=30, what="the refusal")
    assert "REPLICATION SLAVE" in line["why"] and line["code"] == 1227, line
    assert "retrying the feed in 1s" in line["next"]
    # Several retries (one a second), still one line.
    time.sleep(4)
    assert len(msgs(pod, STOPPED)) == 1
    # Refused at the first fetch, after mariadb_rpl_open succeeded: never "following".
    assert msgs(pod, FOLLOWING) == []
    assert pod.metrics()["jobdrainer_binlog_following"] == 0
    farm.push_null_jobs("wiki3.farm.test", 2)
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == "wiki3.farm.test"
                 and l.get("jobs_ok", 0) >= 1, timeout=60, what="a batch found by scanning")
    assert pod.stop() == 0


def wait_for_catch_up(pod, following):
    """Until the catch-up sweep the detector starts when its feed follows again (the
    `following` line) is done: a job pushed before that could be found by the sweep
    rather than by a wake."""
    lines = pod.lines()
    after = lines[lines.index(following):]
    if not any(l.get("msg") == "scan" for l in after):
        pod.wait_for(lambda l: l.get("msg") == "scan" and l.get("ts", "") >= following["ts"],
                     timeout=30, what="the catch-up sweep after the gap")


def test_purged_position_resumes_at_the_current_one(bl_farm, sidecars):
    farm = bl_farm
    pod = start_following(sidecars, farm, name="pod-purge", binlog={"retry_interval": 10})
    first = msgs(pod, FOLLOWING)[0]
    # Cut the feed, and purge its file before it comes back.
    farm.sql("KILL %d" % farm.sql("SELECT id FROM information_schema.processlist "
                                  "WHERE command LIKE 'Binlog Dump%%'")[0][0])
    wait_until(lambda: dump_threads(farm) == 0, timeout=10, what="the dump thread gone")
    farm.sql("FLUSH BINARY LOGS")
    current = farm.sql("SHOW MASTER STATUS")[0][0]

    def purged():
        # A file is kept until InnoDB's checkpoint has passed its transactions.
        farm.sql("PURGE BINARY LOGS TO '%s'" % current)
        return first["file"] not in [r[0] for r in farm.sql("SHOW BINARY LOGS")]
    wait_until(purged, timeout=8, interval=0.2, what="the feed's file purged")
    purged = pod.wait_for(lambda l: l.get("msg") == STOPPED and l.get("code") == 1236,
                          timeout=30, what="the purged position")
    assert "purged" in purged["why"]
    again = pod.wait_for(lambda l: l.get("msg") == FOLLOWING and l.get("file") == current,
                         timeout=30, what="the feed at the current position")
    assert again["after_failures"] == 2
    stopped = msgs(pod, STOPPED)
    assert [l.get("code") for l in stopped] == [2013, 1236], stopped
    # What was written while no feed followed is found by a catch-up sweep, at once
    # (the next scheduled one is a minute away); then the wakes again.
    wait_for_catch_up(pod, again)
    assert_woken_and_run(pod, farm, "wiki2.farm.test",
                         lambda: farm.push_null_jobs("wiki2.farm.test", 2))
    assert pod.stop() == 0


def test_server_restart_is_logged_once_and_the_feed_resumes(bl_farm, sidecars):
    farm = bl_farm
    pod = start_following(sidecars, farm, name="pod-restart")
    farm.kill_mysql()
    time.sleep(3)  # several retries (one a second) while the server is down
    farm.restart_mysql()
    again = pod.wait_for(lambda l: l.get("msg") == FOLLOWING and "after_failures" in l,
                         timeout=60, what="the feed back")
    assert again["after_failures"] >= 2
    stopped = msgs(pod, STOPPED)
    assert len(stopped) == 1 and "connection lost" in stopped[0]["why"], stopped
    # The scanner recovers too (its own retries); then a push is woken again.
    wait_until(lambda: pod.metrics().get("jobdrainer_ready") == 1, timeout=60,
               what="ready again")
    start = len(pod.lines())
    farm.push_null_jobs("wiki1.farm.test", 2)
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == "wiki1.farm.test"
                 and l.get("jobs_ok", 0) >= 1, timeout=50, what="a batch after the restart")
    assert any(l.get("msg") == WOKEN and l.get("first") == "wiki1.farm.test"
               for l in pod.lines()[start:])
    assert pod.stop() == 0


def test_binlog_off_is_logged_once_and_scanning_goes_on(bl_farm, sidecars):
    farm = bl_farm
    farm.kill_mysql()
    farm.binlog_format = None
    try:
        farm.restart_mysql()
        pod = sidecars("pod-off", ini(farm, scan_interval=2))
        line = pod.wait_for(lambda l: l.get("msg") == STOPPED, timeout=30, what="binlog off")
        assert "log_bin" in line["why"], line
        time.sleep(3)
        assert len(msgs(pod, STOPPED)) == 1
        farm.push_null_jobs("wiki2.farm.test", 2)
        pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == "wiki2.farm.test"
                     and l.get("jobs_ok", 0) >= 1, timeout=60, what="a batch by scanning")
        assert msgs(pod, FOLLOWING) == []
        assert pod.stop() == 0
    finally:
        farm.kill_mysql()
        farm.binlog_format = "ROW"
        farm.restart_mysql()


@pytest.mark.parametrize("fmt", ["ROW", "MIXED"])
def test_compressed_events_wake_every_insert(bl_farm, sidecars, fmt):
    """log_bin_compress: MariaDB writes compressed QUERY and write-rows events (types
    165-171) for everything over log_bin_compress_min_len; each insert wakes its wiki."""
    farm = bl_farm
    farm.sql("SET GLOBAL binlog_format = '%s'" % fmt)
    farm.sql("SET GLOBAL log_bin_compress = ON")
    farm.sql("SET GLOBAL log_bin_compress_min_len = 10")
    try:
        pod = start_following(sidecars, farm, name="pod-z" + fmt.lower())
        for domain in WIKIS:
            assert_woken_and_run(pod, farm, domain, lambda: farm.push_null_jobs(domain, 2))
        kinds = {t for t, _ in binlog_events(farm)}
        want = "Query_compressed" if fmt == "MIXED" else "Write_rows_compressed_v1"
        assert want in kinds, ("the pushes were not compressed: this test did not test "
                               "compressed events", kinds)
        assert pod.metrics()["jobdrainer_binlog_following"] == 1
        assert not msgs(pod, STOPPED) and not msgs(pod, "binary log feed blind")
        assert pod.stop() == 0
    finally:
        farm.sql("SET GLOBAL log_bin_compress = OFF")
        farm.sql("SET GLOBAL binlog_format = 'ROW'")


def test_a_server_id_clash_is_logged_once_and_ends(bl_farm, sidecars):
    """Another replica (mariadb-binlog, as a replica with server id 4242) connects with
    the feed's server_id: the server ends the feed's dump (4052). The feed logs it once,
    comes back with another id, and leaves the other replica connected: no knocking each
    other off for ever."""
    farm = bl_farm
    pod = start_following(sidecars, farm, name="pod-clash",
                          binlog={"server_id": 4242, "retry_interval": 1})
    assert msgs(pod, FOLLOWING)[0]["server_id"] == 4242
    current = farm.sql("SHOW MASTER STATUS")[0][0]
    other = subprocess.Popen(
        ["mariadb-binlog", "--read-from-remote-server", "--socket=" + farm.socket,
         "--user=root", "--stop-never", "--stop-never-slave-server-id=4242", current],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        line = pod.wait_for(lambda l: l.get("msg") == STOPPED, timeout=30,
                            what="the clash")
        assert line["code"] == 4052 and "server_id" in line["why"], line
        again = pod.wait_for(lambda l: l.get("msg") == FOLLOWING and "after_failures" in l,
                             timeout=30, what="the feed back with another id")
        assert again["server_id"] != 4242
        assert str(again["server_id"]) in line["next"], (line, again)
        # Both followers stay connected: the other one was not knocked off in turn.
        wait_until(lambda: dump_threads(farm) == 2, timeout=10, what="two dump threads")
        assert other.poll() is None
        assert len(msgs(pod, STOPPED)) == 1
        wait_for_catch_up(pod, again)
        assert_woken_and_run(pod, farm, "wiki1.farm.test",
                             lambda: farm.push_null_jobs("wiki1.farm.test", 1))
        assert len(msgs(pod, STOPPED)) == 1
        assert pod.stop() == 0
    finally:
        other.kill()
        other.wait()


def test_a_following_feed_keeps_the_sweep_within_the_budget(bl_farm, sidecars):
    """[scan] max_sweep_seconds raises detection's share only while nothing else sees
    new jobs. With 400 more wikis at 1 % of a core, one wiki per statement and
    max_sweep_seconds = 1: a sidecar whose feed follows sweeps within 1 % (a raise made
    before the feed followed is taken back, with the feed as the reason); one whose feed
    cannot log in raises the share. Last in the module: it adds wikis."""
    from test_scan_budget import add_table_only_wiki, sweep_shares

    # 400, as in test_scan_budget.py: a sweep far over the 5 ms beyond which the raise
    # is due (with 100 it cost about 10 ms here).
    for i in range(400):
        add_table_only_wiki(bl_farm, "b%03d.farm.test" % i)
    scan = {"db_budget_percent": 1, "wikis_per_query": 1, "interval": 1,
            "full_interval": 3600, "queries_per_second": 0, "max_sweep_seconds": 1}
    fed = start_following(sidecars, bl_farm, name="pod-fed", scan=scan)
    wait_until(lambda: len(sweep_shares(fed)) >= 5, timeout=240, what="six sweeps")
    shares = sorted(sweep_shares(fed)[2:])
    assert shares[len(shares) // 2] <= 0.015, sweep_shares(fed)
    raised = msgs(fed, "database budget raised to keep the sweep short")
    back = msgs(fed, "database budget back to its setting")
    if raised:
        assert back and "binary log feed" in back[-1].get("why", ""), (raised, back)
    fed.stop()

    unfed = sidecars("pod-unfed", ini(bl_farm, scan=scan, binlog={"password": "wrong"}))
    line = unfed.wait_for(lambda l: l.get("msg") == "database budget raised to keep the "
                          "sweep short", timeout=120, what="the budget raised without a feed")
    assert int(line["sweep_budget_percent"]) > 1, line
    assert msgs(unfed, FOLLOWING) == []


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def test_big_row_events_leave_the_feed_small(bl_farm, sidecars):
    """Rows of 15 MB elsewhere on the server (the dump sends every table's events): the
    feed's memory comes back down after each (it used to stay at the largest event, 60
    MB and more, beyond the chart's 64 Mi limit with the rest of the process), and a job
    written in the same transaction after such a row still wakes its wiki."""
    farm = bl_farm
    farm.sql("SET GLOBAL binlog_format = 'ROW'")
    farm.sql("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024")
    farm.sql("CREATE DATABASE IF NOT EXISTS farm_big")
    farm.sql("CREATE TABLE IF NOT EXISTS farm_big.blobs (id INT AUTO_INCREMENT PRIMARY KEY,"
             " b LONGBLOB)")
    pod = start_following(sidecars, farm, name="pod-big")
    before = rss_mib(pod.proc.pid)
    for _ in range(4):
        farm.sql("INSERT INTO farm_big.blobs (b) VALUES (REPEAT('x', 15 * 1024 * 1024))")
    # A job after them is woken: the feed has read past the big rows.
    assert_woken_and_run(pod, farm, "wiki3.farm.test",
                         lambda: farm.push_null_jobs("wiki3.farm.test", 1))
    # Each big event is followed by a quiet reconnect (a debug line), not a failure.
    assert not msgs(pod, STOPPED), msgs(pod, STOPPED)
    after = rss_mib(pod.proc.pid)
    # AddressSanitizer's quarantine keeps freed blocks: resident sizes mean nothing there.
    measured = "ASAN_OPTIONS" not in os.environ
    assert not measured or after < before + 8, (before, after)
    assert not measured or after < 32, after

    def big_row_then_job():
        w = farm.wiki("wiki2.farm.test")
        conn = farm._root_conn()
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("INSERT INTO farm_big.blobs (b) VALUES (REPEAT('y', 15 * 1024 * 1024))")
                cur.execute("INSERT INTO %s (job_cmd, job_namespace, job_title, job_timestamp,"
                            " job_params, job_random, job_sha1) VALUES ('null', -1, 'Blankpage',"
                            " UTC_TIMESTAMP() + 0, 'a:0:{}', 1, '')" % w.job_table)
                cur.execute("COMMIT")
        finally:
            conn.close()

    assert_woken_and_run(pod, farm, "wiki2.farm.test", big_row_then_job)
    assert not measured or rss_mib(pod.proc.pid) < 32
    # Each big event was read whole (libmariadb cannot skip one unread), then the feed
    # reconnected at the exact next event: it stayed following (one "following" line,
    # no catch-up asked for) and lost no insert (the wakes above).
    big = msgs(pod, "binary log feed reconnecting after a big event")
    assert len(big) >= 5 and all(l["bytes"] > 15 * 1024 * 1024 for l in big), big
    assert len(msgs(pod, FOLLOWING)) == 1
    assert pod.metrics()["jobdrainer_binlog_following"] == 1
    assert pod.stop() == 0
