"""Every bad input is logged and skipped while the other wikis drain: a wrong secret, a
missing database, a soft-deleted wiki, rows discovery must refuse, garbage from
MediaWiki, and a database that is down at start."""

import time

import pytest

from faults import FaultProxy, trickle
from sidecar import farm_ini, wait_until


@pytest.fixture(scope="module")
def bad_farm(farm):
    """The module farm plus wikis that are wrong in every way discovery and MediaWiki
    can be wrong."""
    farm.add_wiki("wrongsecret.farm.test", mw_secret="f" * 64)
    farm.add_wiki("nodb.farm.test", create_db=False)
    farm.add_wiki("deleted.farm.test")
    farm.push_null_jobs("wrongsecret.farm.test", 30)
    farm.push_null_jobs("deleted.farm.test", 30)
    farm.set_deleted("deleted.farm.test")
    # Rows discovery must refuse: an identifier that would break out of SQL, a NULL
    # secret, a duplicate domain.
    farm.sql("INSERT INTO wikis (domain, sitename, created_at, updated_at) VALUES "
             "('evil.farm.test', 'e', NOW(), NOW()), ('nosecret.farm.test', 'n', NOW(), NOW())",
             db="apidb")
    evil = farm.sql("SELECT id FROM wikis WHERE domain='evil.farm.test'", db="apidb")[0][0]
    nosecret = farm.sql("SELECT id FROM wikis WHERE domain='nosecret.farm.test'",
                        db="apidb")[0][0]
    farm.sql("INSERT INTO wiki_dbs (name, prefix, user, password, version, wiki_id) VALUES "
             "('mwdb_x`; DROP DATABASE apidb; --', 'mwt_x', 'u', 'p', 'mw1.39-wbs1', %s), "
             "('mwdb_nosecret', 'mwt_y', 'u', 'p', 'mw1.39-wbs1', %s)" % (evil, nosecret),
             db="apidb")
    farm.sql("INSERT INTO wiki_settings (name, value, wiki_id) VALUES ('wgSecretKey', 'x', %s)"
             % evil, db="apidb")
    return farm


GOOD = ("wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test")


def test_bad_wikis_are_logged_and_skipped_while_the_others_drain(bad_farm, sidecars):
    farm = bad_farm
    for d in GOOD:
        farm.push_null_jobs(d, 120)
    pod = sidecars("pod-bad", farm_ini(farm))
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in GOOD), timeout=120,
               what="good wikis drained")

    # Wrong secret: MediaWiki answers 400; logged as an error naming the wiki, with what
    # happens next; its jobs are still there.
    bad = pod.wait_for(lambda l: l.get("wiki") == "wrongsecret.farm.test"
                       and l.get("outcome") == "bad_request", what="bad_request line")
    assert bad["severity"] == "ERROR" and bad["http_status"] == 400
    assert bad["next"].startswith("backoff ")
    assert "secret" in bad["detail"]
    assert farm.ready_jobs("wrongsecret.farm.test") == 30

    # Missing database: the scan cannot read its job table; logged once, never requested.
    nodb = pod.wait_for(lambda l: l.get("wiki") == "nodb.farm.test", what="nodb line")
    assert nodb["msg"] == "wiki skipped: its job table cannot be read"
    assert nodb["severity"] == "ERROR" and "doesn't exist" in nodb["error"]

    # Refused rows: logged with the reason, once, and never used in SQL.
    skipped = [l for l in pod.lines() if l.get("msg") == "discovery: wiki skipped"]
    reasons = {l.get("wiki"): l["reason"] for l in skipped}
    assert "not a plain identifier" in reasons["evil.farm.test"]
    assert "secret key is missing" in reasons["nosecret.farm.test"]
    assert farm.sql("SHOW DATABASES LIKE 'apidb'")  # still there

    # Give discovery (every 2 s) a few more rounds: each problem is still logged once.
    # An absence, so a window: 5 s is two or three more rounds, each of which would log
    # the problems again were they not remembered.
    wait_until(lambda: sum(1 for l in pod.lines() if l.get("msg") == "discovery") >= 1,
               timeout=10, what="discovery line")
    time.sleep(5)
    lines = pod.lines()
    assert sum(1 for l in lines if l.get("msg") == "discovery: wiki skipped"
               and l.get("wiki") == "evil.farm.test") == 1
    assert sum(1 for l in lines if l.get("wiki") == "nodb.farm.test") == 1

    # Soft-deleted: never requested, its jobs untouched.
    assert farm.ready_jobs("deleted.farm.test") == 30
    hosts = {e["host"] for e in farm.access_log_entries()
             if "jobdrainer_holder=pod-bad" in e["request"]}
    assert "deleted.farm.test" not in hosts and "nodb.farm.test" not in hosts
    assert set(GOOD) <= hosts
    assert pod.stop() == 0


def test_wrong_secret_is_backed_off_not_hammered(bad_farm, sidecars):
    pod = sidecars("pod-backoff", farm_ini(bad_farm, drain={"backoff_base": 2,
                                                            "backoff_max": 60}))
    pod.wait_for(lambda l: l.get("wiki") == "wrongsecret.farm.test"
                 and l.get("outcome") == "bad_request", what="first bad_request")
    time.sleep(8)
    tries = [l for l in pod.batches("wrongsecret.farm.test")]
    # A 400 starts three steps up: at least 2 s * 8 = 16 s ceiling, 2 s floor. In 8 s
    # that leaves room for very few attempts, against 8+ with no backoff at all.
    assert 1 <= len(tries) <= 4, tries
    assert pod.stop() == 0


GARBAGE = {
    # host: (fault, expected outcome, expected words in the log line's detail)
    "html.farm.test": ((200, b"<html><body>Fatal error</body></html>", "text/html"),
                       "bad_response", "not JSON"),
    "truncated.farm.test": ((200, b'{"jobs":[{"type":"x","status":"ok"}],"reached":',
                             "application/json"), "bad_response", "not JSON"),
    "wrongtypes.farm.test": ((200, b'{"jobs":"many","reached":7}', "application/json"),
                             "bad_response", '"jobs"'),
    "huge.farm.test": ((200, b"[" + b"0," * (5 * 1024 * 1024) + b"0]", "application/json"),
                       "bad_response", "max_body_kib"),
    "redirect.farm.test": ((302, b"", "text/html", [("Location", "http://elsewhere/")]),
                           "bad_response", "redirect"),
    "error500.farm.test": ((500, b"<h1>Internal error</h1>", "text/html"),
                           "server_error", "Internal error"),
    "trickle.farm.test": (trickle(60), "timeout", "timed out"),
}


def test_garbage_from_mediawiki_is_classified_while_other_wikis_drain(farm, sidecars):
    for host in GARBAGE:
        if host not in farm.wikis:
            farm.add_wiki(host)
        farm.push_null_jobs(host, 5)
    for d in GOOD:
        farm.push_null_jobs(d, 60)
    proxy = FaultProxy(upstream_port=farm.http_port)
    proxy.faults = {h: f[0] for h, f in GARBAGE.items()}
    try:
        # A short HTTP timeout so the trickling answer times out within the test.
        pod = sidecars("pod-garbage", farm_ini(
            farm, mediawiki={"port": proxy.port, "maxtime": 5, "timeout_allowance": 5},
            drain={"backoff_base": 30, "backoff_max": 60, "breaker_failures": 1000}))
        wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in GOOD), timeout=120,
                   what="good wikis drained through the proxy")
        for host, (_, outcome, words) in GARBAGE.items():
            line = pod.wait_for(lambda l, h=host: l.get("wiki") == h
                                and l.get("msg") == "batch failed", timeout=60,
                                what="the failed batch of " + host)
            assert line["outcome"] == outcome, line
            assert words in line["detail"], line
            assert line["next"].startswith("backoff "), line
            # Nothing lost: MediaWiki never saw the request, the jobs wait.
            assert farm.ready_jobs(host) == 5
        assert pod.proc.poll() is None
        assert pod.stop() == 0
    finally:
        proxy.close()


def test_duplicate_domains_and_a_broken_query(farm, sidecars):
    # The query lists wiki1 twice (the second time with another secret): the first row
    # wins, the duplicate is logged and skipped. Long SQL goes on continuation lines.
    query = ("SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value FROM wikis w\n"
             "JOIN wiki_dbs d ON d.wiki_id = w.id\n"
             "LEFT JOIN wiki_settings s ON s.wiki_id = w.id AND s.name = 'wgSecretKey'\n"
             "WHERE w.deleted_at IS NULL\n"
             "UNION ALL SELECT w.domain, d.name, CONCAT(d.prefix, '_'), 'other' FROM wikis w\n"
             "JOIN wiki_dbs d ON d.wiki_id = w.id WHERE w.domain = 'wiki1.farm.test'")
    for d in GOOD:
        farm.push_null_jobs(d, 20)
    pod = sidecars("pod-dup", farm_ini(farm, discovery={"query": query}))
    line = pod.wait_for(lambda l: l.get("msg") == "discovery: wiki skipped"
                        and l.get("wiki") == "wiki1.farm.test", what="duplicate skipped")
    assert "duplicate domain" in line["reason"]
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in GOOD), timeout=60,
               what="every wiki drained once")
    assert pod.stop() == 0

    # An SQL error in the configured query: logged with MariaDB's message, retried,
    # the sidecar stays up and not ready.
    pod = sidecars("pod-badsql", farm_ini(farm, discovery={"query": "SELECT domain FROM nosuch"}))
    line = pod.wait_for(lambda l: l.get("msg") == "discovery failed", what="discovery failed")
    assert "nosuch" in line["error"] and line["next"].startswith("retrying in ")
    status, text = pod.get("/readyz")
    assert status == 503 and "discovery" in text
    assert pod.stop() == 0


def test_refused_connection_is_classified(farm, sidecars):
    farm.push_null_jobs("wiki3.farm.test", 5)
    pod = sidecars("pod-refused", farm_ini(farm, mediawiki={"port": 1}))
    line = pod.wait_for(lambda l: l.get("outcome") == "refused", what="refused batch")
    # The pod's own MediaWiki is not listening: a fault of the pod, not the wiki
    # (issue 14), so the wiki is handed to other pods without a fleet-wide backoff.
    assert line["http_status"] == 0 and line["next"].startswith("released to other pods")
    assert pod.stop() == 0
    farm.run_jobs_php("wiki3.farm.test")


def test_database_down_at_start_is_retried_not_fatal(farm, sidecars, tmp_path):
    # Nothing listens on port 1: the sidecar keeps running, says so, and retries.
    pod = sidecars("pod-nodb", farm_ini(farm, platform_db={"port": 1, "connect_timeout": 1}))
    line = pod.wait_for(lambda l: l.get("msg") == "discovery failed", what="discovery failed")
    assert line["severity"] == "ERROR"
    assert "cannot connect" in line["error"] and line["next"].startswith("retrying in ")
    assert "jdpass" not in pod.raw()
    assert pod.proc.poll() is None
    assert pod.stop() == 0
