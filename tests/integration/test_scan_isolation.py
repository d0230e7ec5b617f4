"""The scan side of "one wiki never blocks another", on a real farm: job tables broken in
every way seen (a discarded tablespace, a view whose base table is gone, a platform row
naming information_schema, a table locked past query_timeout) beside healthy wikis with
backlogs; orphaned claims shown in status and /metrics; the database killed for two
minutes, made read-only (an old primary after a failover), and stopped (SIGSTOP) under
a shutting-down sidecar."""

import json
import os
import signal
import time

import pytest

from farm import temporary_farm
from sidecar import farm_ini, wait_until
from test_leases import requests
from test_operate import run_cli

HEALTHY = ["ok%d.farm.test" % i for i in range(1, 5)]
BROKEN = {  # wiki: the error its job table gives
    "discarded.farm.test": "1814",
    "brokenview.farm.test": "1356",
    "infoschema.farm.test": "1109",
    "locked.farm.test": None,  # stopped by the server's time limit, or the read timeout
}
QUERY_TIMEOUT = 3
UNREADABLE = "wiki skipped: its job table cannot be read"


def ini(farm, **more):
    sections = {
        "sidecar": {"shutdown_timeout": 5},
        "mediawiki": {"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5},
        "scan_db": {"query_timeout": QUERY_TIMEOUT},
        "scan": {"interval": 1, "full_interval": 2},
        "coordination": {"lease_ttl": 15, "safety_margin": 2, "renew_interval": 3,
                         "poll_interval_ms": 200},
        "drain": {"time_slice": 1, "backoff_base": 1, "backoff_max": 5},
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


@pytest.fixture(scope="module")
def iso_farm():
    with temporary_farm("jdscan-") as f:
        for domain in HEALTHY:
            f.add_wiki(domain)
        w = f.add_wiki("discarded.farm.test")
        f.sql("ALTER TABLE %s DISCARD TABLESPACE" % w.job_table)
        w = f.add_wiki("brokenview.farm.test")
        base = "`%s`.`%s_job_base`" % (w.dbname, w.prefix)
        f.sql("RENAME TABLE %s TO %s" % (w.job_table, base))
        f.sql("CREATE VIEW %s AS SELECT * FROM %s" % (w.job_table, base))
        f.sql("DROP TABLE %s" % base)
        f.add_wiki("locked.farm.test")
        # A platform row naming information_schema, which every user can read.
        f.sql("INSERT INTO wikis (domain, sitename, created_at, updated_at) VALUES "
              "('infoschema.farm.test', 'i', NOW(), NOW())", db="apidb")
        wid = f.sql("SELECT id FROM wikis WHERE domain = 'infoschema.farm.test'", db="apidb")[0][0]
        f.sql("INSERT INTO wiki_dbs (name, prefix, user, password, version, wiki_id) VALUES "
              "('information_schema', 'x', 'u', 'p', 'mw1.39-wbs1', %s)", (wid,), db="apidb")
        f.sql("INSERT INTO wiki_settings (name, value, wiki_id) VALUES ('wgSecretKey', 's', %s)",
              (wid,), db="apidb")
        yield f


def status_json(tmp_path, farm):
    path = tmp_path / "status.ini"
    path.write_text(ini(farm))
    r = run_cli(str(path), "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_broken_job_tables_stay_with_their_wiki(iso_farm, sidecars, tmp_path):
    farm = iso_farm
    # Held from another connection for the whole test: far past query_timeout.
    locker = farm._root_conn()
    with locker.cursor() as cur:
        cur.execute("LOCK TABLES %s WRITE" % farm.wiki("locked.farm.test").job_table)
    try:
        for d in HEALTHY:
            farm.insert_probe_jobs(d, 60)
        # One statement per group holds every wiki: each failure starts in a group.
        pods = [sidecars("iso%d" % i, ini(farm)) for i in (1, 2)]
        wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in HEALTHY), timeout=120,
                   what="healthy wikis drained beside the broken ones")
        scanner = wait_until(lambda: next((p for p in pods
                                           if p.metrics()["jobdrainer_scanner_lease_held"]),
                                          None), timeout=30, what="a scanner")
        first = scanner.metrics()["jobdrainer_scans_total"]
        wait_until(lambda: scanner.metrics()["jobdrainer_scans_total"] >= first + 5,
                   timeout=90, what="five more scans")
        lines = [l for p in pods for l in p.lines()]
        for wiki, code in BROKEN.items():
            logged = [l for l in lines if l.get("msg") == UNREADABLE and l.get("wiki") == wiki]
            assert len(logged) == 1, (wiki, logged)
            if code is not None:
                assert "error %s" % code in logged[0]["error"], logged[0]
        assert not [l for l in lines if l.get("msg") == "scan failed"], \
            [l for l in lines if l.get("msg") == "scan failed"][:3]
        # Every pod reports the fleet's scan age, and it stays fresh (a pass scans the
        # locked wiki last, alone, within QUERY_TIMEOUT).
        for p in pods:
            m = p.metrics()
            assert 0 <= m["jobdrainer_scan_age_seconds"] < 4 * QUERY_TIMEOUT + 5, m
        doc = status_json(tmp_path, farm)
        shown = {w["wiki"]: w for w in doc["wikis_shown"]}
        for wiki, code in BROKEN.items():
            assert shown[wiki]["state"] == "unreadable", shown.get(wiki)
            if code is not None:
                assert "error %s" % code in shown[wiki]["error"]
        assert doc["unreadable"] == len(BROKEN)
        assert 0 <= doc["scan_age_s"] < 4 * QUERY_TIMEOUT + 5
        # The server stopped the locked statements itself: no thread of ours is left
        # waiting on the lock after the client gave up.
        waiting = farm.sql("SELECT COUNT(*) FROM information_schema.processlist WHERE "
                           "user = 'jobdrainer' AND state LIKE 'Waiting for table%%'")[0][0]
        assert waiting <= 1, waiting
    finally:
        locker.close()
    # Healed: readable again, logged once.
    wait_until(lambda: any(l.get("msg") == "wiki readable again"
                           and l.get("wiki") == "locked.farm.test"
                           for p in pods for l in p.lines()), timeout=30,
               what="locked wiki readable again")
    for p in pods:
        assert p.stop() == 0


def test_orphaned_claims_show_in_status_and_metrics(iso_farm, sidecars, tmp_path):
    farm = iso_farm
    domain = HEALTHY[0]
    table = farm.wiki(domain).job_table
    # Rows a killed batch left claimed: a token and a claim time 10 minutes ago (and
    # one claimed a moment ago, which is a batch at work, not an orphan).
    farm.insert_raw_jobs(domain, 4, cmd="farmOrphan")
    farm.sql("UPDATE %s SET job_token = 'deadbeef', job_token_timestamp = "
             "DATE_FORMAT(UTC_TIMESTAMP() - INTERVAL 10 MINUTE, '%%Y%%m%%d%%H%%i%%S') "
             "WHERE job_cmd = 'farmOrphan' LIMIT 3" % table)
    farm.sql("UPDATE %s SET job_token = 'cafe', job_token_timestamp = "
             "DATE_FORMAT(UTC_TIMESTAMP(), '%%Y%%m%%d%%H%%i%%S') "
             "WHERE job_cmd = 'farmOrphan' AND job_token = ''" % table)
    try:
        pod = sidecars("orphans", ini(farm))
        wait_until(lambda: pod.metrics()["jobdrainer_orphaned_claims"] == 3, timeout=60,
                   what="orphaned claims in /metrics")
        m = pod.metrics()
        assert 595 <= m["jobdrainer_orphaned_claims_oldest_age_seconds"] < 700, m
        doc = status_json(tmp_path, farm)
        assert doc["orphaned_claims"] == 3
        assert 595 <= doc["orphaned_claims_oldest_age_s"] < 700
        w = next(w for w in doc["wikis_shown"] if w["wiki"] == domain)
        assert w["orphaned_claims"] == 3 and 595 <= w["orphaned_claims_oldest_age_s"] < 700
        path = tmp_path / "status.ini"
        text = run_cli(str(path), "status").stdout
        assert "ORPHANED" in text and "3 orphaned claims" in text
        row = next(l.split() for l in text.splitlines() if l.startswith(domain))
        assert row[-2] == "3" and row[-1].startswith("10m"), row
        # Gone (MediaWiki recycled or deleted them): the figures follow.
        farm.sql("DELETE FROM %s WHERE job_cmd = 'farmOrphan'" % table)
        wait_until(lambda: pod.metrics()["jobdrainer_orphaned_claims"] == 0, timeout=60,
                   what="orphans cleared")
        assert pod.metrics()["jobdrainer_orphaned_claims_oldest_age_seconds"] == 0
        assert pod.stop() == 0
    finally:
        farm.sql("DELETE FROM %s WHERE job_cmd = 'farmOrphan'" % table)


def _ready(pod):
    try:
        return pod.get("/readyz")[0] == 200
    except OSError:
        return False


def test_read_only_primary_connections_are_replaced(iso_farm, sidecars):
    farm = iso_farm
    pod = sidecars("ro", ini(farm))
    wait_until(lambda: _ready(pod), timeout=30, what="ready")
    farm.insert_probe_jobs(HEALTHY[1], 20)
    wait_until(lambda: farm.ready_jobs(HEALTHY[1]) == 0, timeout=60, what="drained before")
    before = {r[0] for r in farm.sql("SELECT id FROM information_schema.processlist "
                                     "WHERE user = 'jobdrainer'")}
    farm.sql("SET GLOBAL read_only = 1")
    try:
        pod.wait_for(lambda l: "error 1290" in str(l.get("error", "")), timeout=30,
                     what="a write refused with 1290")
        time.sleep(3)
    finally:
        farm.sql("SET GLOBAL read_only = 0")
    t_back = time.time()
    farm.insert_probe_jobs(HEALTHY[1], 20)
    wait_until(lambda: farm.ready_jobs(HEALTHY[1]) == 0, timeout=30,
               what="drained after read_only = 0, without a restart")
    assert time.time() - t_back < 20
    after = {r[0] for r in farm.sql("SELECT id FROM information_schema.processlist "
                                    "WHERE user = 'jobdrainer'")}
    # The connections that met the read-only server were closed and made anew (after a
    # real failover, the new ones reach the new primary).
    assert before - after, (before, after)
    assert pod.proc.poll() is None
    assert pod.stop() == 0


def _database_errors(pod):
    m = pod.metrics()
    return sum(m.get('jobdrainer_errors_total{kind="%s"}' % k, 0)
               for k in ("scan", "coordination", "discovery"))


def _cpu_seconds(pod):
    with open("/proc/%d/stat" % pod.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_database_killed_two_minutes_every_pod_back_within_15s(iso_farm, sidecars):
    farm = iso_farm
    # Batches that do not grow, two workers a pod: neither pod can drain the four
    # backlogs alone before the other is back, so both must be seen running batches.
    pods = [sidecars("crash%d" % i, ini(farm, mediawiki={"maxjobs_alone": 10}))
            for i in (1, 2)]
    for p in pods:
        wait_until(lambda: _ready(p), timeout=30, what="%s ready" % p.name)
    errors = {p.name: _database_errors(p) for p in pods}
    cpu = {p.name: _cpu_seconds(p) for p in pods}
    farm.kill_mysql()
    time.sleep(120)
    # Failures while the database is away are retried on its schedule (at most a few
    # a second each for discovery, the scan and the coordination connection), never in
    # a loop: a refused connection fails at once, and a loop on it was seen counting a
    # million failures in 13 s and taking a core from the pod.
    for p in pods:
        added = _database_errors(p) - errors[p.name]
        assert 3 <= added < 1000, (p.name, added, "cpu s", _cpu_seconds(p) - cpu[p.name])
    farm.restart_mysql()
    t_up = time.time()
    # A backlog on every healthy wiki, queued the moment the database answers.
    for d in HEALTHY:
        farm.insert_probe_jobs(d, 2000)
    ready_at = {}
    drained_at = {}
    while time.time() < t_up + 40 and (len(ready_at) < 2 or len(drained_at) < 2):
        for p in pods:
            if p.name not in ready_at and _ready(p):
                ready_at[p.name] = time.time() - t_up
        for _, _, holder, _, _ in requests(farm, since=t_up):
            name = holder.rsplit(":", 1)[0]
            if name not in drained_at:
                drained_at[name] = time.time() - t_up
        time.sleep(0.2)
    # Judged from the access log's start times, not our polling.
    first = {}
    for start, _, holder, _, _ in requests(farm, since=t_up):
        first.setdefault(holder.rsplit(":", 1)[0], start - t_up)
    assert set(ready_at) == {"crash1", "crash2"} and max(ready_at.values()) < 15, ready_at
    assert set(first) == {"crash1", "crash2"} and max(first.values()) < 15, first
    for p in pods:
        assert p.stop() == 0


def test_a_refused_scan_login_is_retried_on_schedule(iso_farm, sidecars):
    """The scan's database user refused (a rotated password), the coordination database
    fine: the scanner keeps its lease and retries the scan on the database's schedule,
    not in a loop (db.c refuses at once between its paced logins, and a loop on that
    refusal took half a core for as long as the login was refused)."""
    farm = iso_farm
    pod = sidecars("refused", ini(farm, scan_db={
        "host": "127.0.0.1", "port": farm.mysql_port, "user": "jobdrainer",
        "password": "rotated-elsewhere"}))
    pod.wait_for(lambda l: l.get("msg") == "scan failed", timeout=30, what="scan failed")
    before, cpu = _database_errors(pod), _cpu_seconds(pod)
    time.sleep(20)
    added = _database_errors(pod) - before
    line = next(l for l in pod.lines() if l.get("msg") == "scan failed")
    assert "Access denied" in line["error"], line
    # 250 ms doubling to 4 s: about ten attempts in 20 s.
    assert 2 <= added < 100, (added, "cpu s", _cpu_seconds(pod) - cpu)
    assert pod.stop() == 0


def test_shutdown_with_a_stopped_database_stays_within_the_timeout(iso_farm, sidecars):
    farm = iso_farm
    for d in HEALTHY:
        farm.insert_probe_jobs(d, 200)
    pod = sidecars("hung", ini(farm, sidecar={"shutdown_timeout": 3},
                               platform_db={"query_timeout": 60},
                               scan_db={"query_timeout": 60}))
    wait_until(lambda: len(requests(farm, since=time.time() - 2)) > 0, timeout=30,
               what="draining")
    pids = farm._members(farm._read_pid("mariadbd"))
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(2)   # statements now hang in flight
        t0 = time.monotonic()
        rc = pod.stop(timeout=60)
        took = time.monotonic() - t0
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert rc == 0
    # shutdown_timeout (3 s) + the 2 s the shutdown path's statements get, + slack for
    # a shared CPU; without the cut it waits a query_timeout (60 s) per statement.
    assert took < 3 + 2 + 4, took
