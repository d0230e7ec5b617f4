"""Wikis on several database servers (issue 13 item 4), on a real farm: two MariaDB
servers on loopback, MediaWiki serving wikis from both, and discovery naming each
wiki's server in its optional fifth column. One sidecar scans each server over a
connection of its own and drains every wiki; `status --wiki` and `drain --wiki` read a
wiki's job table on its own server; a bad server value skips that wiki alone; and with
the second server killed, the first server's wikis keep being found and drained while
the second's failures are retried on schedule, until it is back. The same faults
together: the second server dies during a whole-MediaWiki outage, and every job on both
servers is still run once each is back."""

import json
import subprocess
import time

import pytest

from faults import FaultProxy
from farm import temporary_farm
from outage import Outage
from sidecar import BINARY, farm_ini, wait_until

MAIN = ["main1.farm.test", "main2.farm.test"]
SECOND = ["second1.farm.test", "second2.farm.test"]
BAD = "badserver.farm.test"
# The shipped discovery query plus the server column (the farm keeps it in a table of
# its own; wbstack's schema has none).
QUERY = """SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value, fs.server
FROM wikis w
JOIN wiki_dbs d ON d.wiki_id = w.id
LEFT JOIN wiki_settings s ON s.wiki_id = w.id AND s.name = 'wgSecretKey'
LEFT JOIN farm_wiki_servers fs ON fs.wiki_id = w.id
WHERE w.deleted_at IS NULL
ORDER BY w.id"""


@pytest.fixture(scope="module")
def two_servers():
    with temporary_farm("jdservers-") as f:
        db2 = f.add_db_server("db2")
        for d in MAIN:
            f.add_wiki(d)
        for d in SECOND:
            f.add_wiki(d, db_server="db2")
        # A wiki whose server value is not host[:port]: skipped with a reason.
        f.add_wiki(BAD)
        f.sql("INSERT INTO farm_wiki_servers (wiki_id, server) VALUES (%s, 'db2;DROP')",
              (f.wiki(BAD).wiki_id,), db="apidb")
        yield f, db2


def ini(farm, mediawiki_port=None):
    return farm_ini(
        farm, sidecar={"log_level": "debug"},
        discovery={"query": QUERY, "interval": 2},
        mediawiki={"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5,
                   "port": mediawiki_port or farm.http_port},
        # One scan user on both servers, said in [scan_db] itself: a login inherited
        # from [platform_db] is never sent to another server.
        scan_db={"query_timeout": 3, "user": "jobdrainer", "password": "jdpass"},
        # The scan logs in only where the operator allows it.
        scan={"interval": 1, "full_interval": 2,
              "allowed_servers": farm.db_server("db2").address},
        drain={"time_slice": 1, "backoff_base": 1, "backoff_max": 5})


def cli(pod, *args):
    return subprocess.run([BINARY, "--config", pod.ini] + list(args), capture_output=True,
                          text=True, timeout=120)


def test_wikis_on_two_servers_are_scanned_and_drained_each_on_its_own(two_servers, sidecars):
    farm, db2 = two_servers
    # Where the jobs are: each wiki's own server (the farm routes job_counts there).
    for d in MAIN + SECOND:
        farm.push_null_jobs(d, 30)
    assert farm.sql("SELECT COUNT(*) FROM `%s`.`%s_job`"
                    % (farm.wiki(SECOND[0]).dbname, farm.wiki(SECOND[0]).prefix),
                    server="db2")[0][0] == 30
    assert not farm.sql("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                        (farm.wiki(SECOND[0]).dbname,))

    # status --wiki reads a db2 wiki's job types on db2, before any sidecar runs.
    pod = sidecars("pod-servers", ini(farm), start=False)
    r = cli(pod, "status", "--wiki", SECOND[0], "--json")
    assert r.returncode == 0, r.stderr
    assert "null" in json.dumps(json.loads(r.stdout)), r.stdout

    pod.start()
    wait_until(lambda: all(not farm.job_counts(d) for d in MAIN + SECOND), timeout=120,
               what="every wiki on both servers drained")
    lines = pod.lines()
    added = [l for l in lines if l.get("msg") == "database server added to the scan"]
    assert [l.get("server") for l in added] == [db2.address], added
    # One sweep per server: the default server's lines name none, db2's name it.
    sweeps = [l for l in lines if l.get("msg") == "scan"]
    assert any(l.get("server") == db2.address and int(l["wikis"]) == len(SECOND)
               for l in sweeps), sweeps[:6]
    assert any("server" not in l and int(l["wikis"]) == len(MAIN) for l in sweeps), sweeps[:6]
    # The bad value: that wiki alone is skipped, with the reason.
    skipped = [l for l in lines if l.get("msg") == "discovery: wiki skipped"]
    assert [l.get("wiki") for l in skipped] == [BAD], skipped
    assert "host:port" in skipped[0]["reason"]
    for d in MAIN + SECOND:
        assert pod.batches(d), d
    assert not [l for l in lines if l.get("level") == "error"], \
        [l for l in lines if l.get("level") == "error"][:3]

    # One server down: the other server's wikis are still found and drained, and the
    # dead server's scan is retried on the database's schedule, not in a loop.
    farm.kill_db_server("db2")
    errors_before = pod.metrics().get('jobdrainer_errors_total{kind="scan"}', 0)
    t0 = time.monotonic()
    farm.push_null_jobs(MAIN[0], 20)
    wait_until(lambda: not farm.job_counts(MAIN[0]), timeout=60,
               what="a main-server wiki drained while db2 is down")
    pod.wait_for(lambda l: l.get("msg") == "scan failed" and db2.address in l.get("error", ""),
                 timeout=30, what="db2's scan failure logged with its address")
    time.sleep(max(0, 20 - (time.monotonic() - t0)))
    errors = pod.metrics().get('jobdrainer_errors_total{kind="scan"}', 0) - errors_before
    # 250 ms doubling to 4 s: about 10 in 20 s; a loop would count thousands.
    assert 1 <= errors < 100, errors

    # Back: db2's wikis are found again (a job queued while it was down is not lost).
    farm.restart_db_server("db2")
    farm.push_null_jobs(SECOND[1], 15)
    wait_until(lambda: not farm.job_counts(SECOND[1]), timeout=60,
               what="a db2 wiki drained after db2 is back")
    pod.wait_for(lambda l: l.get("msg") == "recovered" and l.get("after") == "scan failed",
                 timeout=30, what="the scan's recovery logged")

    # drain --wiki reads the wiki's queue on its own server, then runs it.
    pod.stop()
    farm.push_null_jobs(SECOND[0], 5)
    r = cli(pod, "drain", "--wiki", SECOND[0])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "has ready jobs" in r.stdout, r.stdout
    assert not farm.job_counts(SECOND[0])


def test_second_server_dies_during_a_mediawiki_outage(two_servers, sidecars):
    """Faults together: MediaWiki as a whole refuses (Apache stopped) and, during that
    outage, the second database server is SIGKILLed, with the bad-server wiki still in
    discovery. Nothing is lost and nothing spins: once MediaWiki is back the main
    server's wikis are drained while db2 is still down (its wikis' MediaWiki requests
    fail and are backed off, its scan retried on schedule), and once db2 is back its
    wikis' jobs, queued before it died, are run too."""
    farm, db2 = two_servers
    proxy = FaultProxy(upstream_port=farm.http_port)
    try:
        check_outage_with_server_down(farm, db2, proxy, sidecars)
    finally:
        proxy.close()


def check_outage_with_server_down(farm, db2, proxy, sidecars):
    pod = sidecars("pod-servers-outage", ini(farm, mediawiki_port=proxy.port))
    wait_until(lambda: pod.metrics().get("jobdrainer_scans_total", 0) >= 2, timeout=60,
               what="both servers swept")
    outage = Outage(proxy, farm, "refused")
    outage.begin()
    t_outage = time.monotonic()
    for d in MAIN + SECOND:
        farm.push_null_jobs(d, 12)
    pod.wait_for(lambda l: str(l.get("msg", "")).startswith("mediawiki breaker open"),
                 timeout=60, what="the breaker open during the outage")
    farm.kill_db_server("db2")
    errors_before = pod.metrics().get('jobdrainer_errors_total{kind="scan"}', 0)
    time.sleep(max(0, t_outage + 30 - time.monotonic()))
    assert pod.proc.poll() is None, pod.raw()[-3000:]
    # Nothing could run: the main server's jobs are all still there.
    assert all(farm.job_counts(d) for d in MAIN), [farm.job_counts(d) for d in MAIN]
    errors = pod.metrics().get('jobdrainer_errors_total{kind="scan"}', 0) - errors_before
    assert errors < 100, errors

    # MediaWiki back, db2 still dead: the main server's wikis drain.
    outage.end()
    wait_until(lambda: all(not farm.job_counts(d) for d in MAIN), timeout=120,
               what="main-server wikis drained with db2 still down")
    pod.wait_for(lambda l: str(l.get("msg", "")).startswith("mediawiki breaker closed"),
                 timeout=60, what="the breaker closed")
    assert pod.wait_for(lambda l: l.get("msg") == "scan failed"
                        and db2.address in l.get("error", ""), timeout=30,
                        what="db2's scan failure logged")

    # db2 back: the jobs queued on it before it died are found and run.
    farm.restart_db_server("db2")
    wait_until(lambda: all(not farm.job_counts(d) for d in SECOND), timeout=120,
               what="db2's wikis drained after it is back")
    assert pod.proc.poll() is None
    skipped = [l for l in pod.lines() if l.get("msg") == "discovery: wiki skipped"]
    assert skipped and all(l.get("wiki") == BAD for l in skipped), skipped
    assert pod.get("/readyz")[0] == 200
