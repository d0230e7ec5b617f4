"""What operators use: /healthz, /readyz and /metrics checked against what happened,
`jobdrainer status` and `jobdrainer drain --wiki`."""

import json
import re
import signal
import subprocess
import time
import urllib.request

from sidecar import BINARY, farm_ini, wait_until

GOOD = ("wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test")


def test_endpoints_report_what_happened(farm, sidecars):
    for d in GOOD:
        farm.push_null_jobs(d, 150)
    pod = sidecars("ops", farm_ini(farm))
    assert pod.get("/healthz") == (200, "ok\n")
    wait_until(lambda: pod.get("/readyz")[0] == 200, timeout=30, what="ready")
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in GOOD), timeout=60,
               what="drained")
    wait_until(lambda: pod.metrics()["jobdrainer_leases_held"] == 0, timeout=10,
               what="leases released")
    # The fleet gauges follow the scans (every second here).
    wait_until(lambda: pod.metrics()["jobdrainer_wikis_with_backlog"] == 0, timeout=10,
               what="no backlog in the fleet view")
    m = pod.metrics()
    batches = pod.batches()
    assert m['jobdrainer_jobs_total{status="ok"}'] == sum(b["jobs_ok"] for b in batches)
    assert m['jobdrainer_jobs_total{status="ok"}'] >= 450
    for outcome in ("drained", "more"):
        assert m['jobdrainer_batches_total{outcome="%s"}' % outcome] == sum(
            1 for b in batches if b["outcome"] == outcome)
    assert m['jobdrainer_lease_operations_total{op="acquire"}'] >= 3
    assert m["jobdrainer_wikis"] == 3     # this module's farm
    assert m["jobdrainer_scanner_lease_held"] == 1
    assert m["jobdrainer_scans_total"] >= 1
    assert m["jobdrainer_batches_in_flight"] == 0
    assert m["jobdrainer_ready"] == 1
    assert m["jobdrainer_wikis_with_backlog"] == 0
    assert m["jobdrainer_oldest_ready_job_age_seconds"] == 0
    # One series per label value, never per wiki.
    status, text = pod.get("/metrics")
    assert "wiki1" not in text
    assert pod.get("/nope")[0] == 404
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % pod.http_port, data=b"x")
    try:
        urllib.request.urlopen(req, timeout=5)
        assert False, "POST accepted"
    except urllib.error.HTTPError as e:
        assert e.code == 405
    assert pod.stop() == 0


def test_batch_wait_histogram_bounds_each_batch(farm, sidecars):
    """jobdrainer_batch_oldest_job_wait_seconds: one observation per batch sent, the age
    of its wiki's oldest ready job (as the scan saw it) when it went out. Jobs queued
    4 minutes ago put their wiki's batches past the 180 s bucket; fresh ones within it."""
    late, fresh = GOOD[0], GOOD[1]
    for d in GOOD:
        farm.run_jobs_php(d)        # nothing left over from the module's other tests
    farm.insert_probe_jobs(late, 30, tag="late", queued=time.time() - 240)
    farm.insert_probe_jobs(fresh, 30, tag="fresh")
    pod = sidecars("wait", farm_ini(farm, mediawiki={"maxjobs": 10}))
    wait_until(lambda: farm.ready_jobs(late) == 0 and farm.ready_jobs(fresh) == 0,
               timeout=60, what="drained")
    wait_until(lambda: pod.metrics()["jobdrainer_leases_held"] == 0, timeout=10,
               what="leases released")
    m = pod.metrics()
    name = "jobdrainer_batch_oldest_job_wait_seconds"
    bucket = lambda le: m['%s_bucket{le="%s"}' % (name, le)]  # noqa: E731
    n_late, n_fresh = len(pod.batches(late)), len(pod.batches(fresh))
    assert n_late >= 1 and n_fresh >= 1
    assert m[name + "_count"] == bucket("+Inf") == len(pod.batches()) == n_late + n_fresh
    assert bucket("180") == n_fresh        # waited seconds: within the promise
    assert bucket("+Inf") - bucket("180") == n_late
    assert bucket("120") == bucket("180")  # nothing between 2 and 3 minutes
    assert m[name + "_sum"] >= 240 * n_late
    les = [float(k.split('"')[1]) for k in m if k.startswith(name + "_bucket")]
    assert les == sorted(les) and les[-1] == float("inf")
    assert pod.stop() == 0


def test_readyz_fails_while_the_database_is_unreachable(farm, sidecars):
    pod = sidecars("ops-nodb", farm_ini(farm, platform_db={"port": 1, "connect_timeout": 1}))
    pod.wait_for(lambda l: l.get("msg") == "discovery failed", what="discovery failed")
    status, text = pod.get("/readyz")
    assert status == 503 and "discovery" in text
    assert pod.get("/healthz")[0] == 200      # alive: restarting would not help
    assert pod.metrics()["jobdrainer_ready"] == 0
    assert pod.metrics()['jobdrainer_errors_total{kind="discovery"}'] >= 1
    assert pod.stop() == 0


def run_cli(ini_path, *args):
    return subprocess.run([BINARY, "--config", ini_path] + list(args), capture_output=True,
                          text=True, timeout=120)


def test_status_and_drain_commands(farm, sidecars, tmp_path):
    farm.push_null_jobs("wiki2.farm.test", 40, usleep_us=20000)   # a 0.8 s drain
    farm.push_null_jobs("wiki3.farm.test", 300)
    ini = tmp_path / "cli.ini"   # what the operator's commands read
    ini.write_text(farm_ini(farm, sidecar={"log_format": "text"},
                            drain={"batches_per_second": 0}))
    # A running sidecar keeps the backlog table current, but drains at a crawl (one job
    # a batch, one batch a second), so there is a backlog to see and to drain by hand.
    scanner = sidecars("ops-scan", farm_ini(farm, sidecar={"workers": 1},
                                            mediawiki={"maxjobs": 1, "maxjobs_alone": 1},
                                            drain={"batches_per_second": 1}))
    wait_until(lambda: "wiki3.farm.test" in run_cli(str(ini), "status").stdout, timeout=30,
               what="status lists the backlog")
    r = run_cli(str(ini), "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("scope (all versions): ")
    # Detection per database server comes first (test_detection_report.py), the wikis last.
    assert lines[2].startswith("detection")
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["WIKI", "STATE"])
    rows = [l.split() for l in lines[head + 1:]]
    assert {row[0] for row in rows} >= {"wiki2.farm.test", "wiki3.farm.test"}
    assert all(row[1] in ("waiting", "draining") for row in rows if row[0].startswith("wiki"))
    r = run_cli(str(ini), "status", "--json")
    doc = json.loads(r.stdout)
    assert doc["with_backlog"] >= 1 and doc["oldest_ready_age_s"] >= 0
    assert {w["wiki"] for w in doc["wikis_shown"]} >= {"wiki3.farm.test"}

    # The scanner sidecar crawls at 1 batch/s with 1 job per batch: drain wiki3 now,
    # unless that sidecar holds it right now (exit 3), then try again.
    def drained_now():
        r = run_cli(str(ini), "drain", "--wiki", "wiki3.farm.test")
        assert r.returncode in (0, 3), (r.returncode, r.stdout, r.stderr)
        return r if r.returncode == 0 else None
    r = wait_until(drained_now, timeout=60, interval=0.5, what="drain --wiki")
    assert "lease taken" in r.stdout and "(queue drained)" in r.stdout, r.stdout
    assert farm.ready_jobs("wiki3.farm.test") == 0
    r = run_cli(str(ini), "drain", "--wiki", "nosuch.farm.test")
    assert r.returncode == 4 and "does not list" in r.stderr
    r = run_cli(str(ini), "drain")
    assert r.returncode == 2
    assert scanner.stop() == 0
    farm.run_jobs_php("wiki2.farm.test")


def test_drain_command_is_paced_and_releases_its_lease_on_sigint(farm, tmp_path):
    """`drain --wiki` keeps [drain] batches_per_second like the daemon, and Ctrl-C ends
    it after the batch in flight with its lease released, not left to expire."""
    domain = "wiki1.farm.test"
    farm.push_null_jobs(domain, 300)
    ini = tmp_path / "paced.ini"
    # One job a batch, never grown: the drain must outlast the Ctrl-C.
    ini.write_text(farm_ini(farm, sidecar={"holder": "cli-paced"},
                            mediawiki={"maxjobs": 1, "maxjobs_alone": 1},
                            drain={"batches_per_second": 2}))
    t0 = time.time()

    def sent():
        return sorted(e["start"] for e in farm.access_log_entries()
                      if e["start"] >= t0 and e["host"] == domain
                      and "jobdrainer_holder=cli-paced" in e["request"])
    p = subprocess.Popen([BINARY, "--config", str(ini), "drain", "--wiki", domain],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(sent()) >= 3, timeout=60, what="drain --wiki batches")
        time.sleep(10)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, (p.returncode, out, err)
    assert "(interrupted; lease released)" in out, out
    rows = farm.sql("SELECT holder FROM jobdrainer.jd_lease WHERE name = %s", (domain,))
    assert rows and all(r[0] is None for r in rows), rows
    starts = sent()
    span = starts[-1] - starts[0]
    # 2 a second plus at most one second's burst of the bucket (unpaced: about 20 a
    # second on this farm).
    assert len(starts) <= 2 * span + 3, (len(starts), span)
    assert farm.ready_jobs(domain) > 0, "the drain was meant to be cut short"
    farm.run_jobs_php(domain)


def test_drain_command_grows_its_batches_like_the_workers(farm, tmp_path):
    """`drain --wiki` follows the workers' batch size rule: with no other wiki waiting,
    a backlog's batches double from [mediawiki] maxjobs up to maxjobs_alone while they
    stay quick, so 1,500 jobs take a few MediaWiki start-ups, not fifteen."""
    domain = "wiki2.farm.test"
    farm.push_null_jobs(domain, 1500)
    ini = tmp_path / "grow.ini"
    ini.write_text(farm_ini(farm, sidecar={"holder": "cli-grow"},
                            mediawiki={"maxjobs": 100, "maxjobs_alone": 1000, "maxtime": 15}))
    r = subprocess.run([BINARY, "--config", str(ini), "drain", "--wiki", domain],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout, r.stderr)
    ran = [int(m) for m in re.findall(r"^batch \d+:.* jobs_ok=(\d+)", r.stdout, re.M)]
    assert sum(ran) == 1500 and not farm.total_jobs(domain), (ran, r.stdout)
    assert ran[0] == 100 and max(ran) > 100, ran
    assert len(ran) < 15, ran
