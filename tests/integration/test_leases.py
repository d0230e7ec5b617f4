"""Many sidecars, one drainer per wiki: leases in the coordination database, proven from
the MediaWiki side (the web server's access log names holder and lease token of every
RunJobs request, with its start time and duration) under kills, stops, restarts."""

import os
import re
import shutil
import signal
import tempfile
import threading
import time
import urllib.parse

import pytest

from farm import Farm
from sidecar import Sidecar, farm_ini, wait_until

# Short leases so that the fault tests run in seconds: a batch lasts at most
# maxtime + timeout_allowance = 10 s; the lease is trusted for 15 - 2 = 13 s.
TTL = 15
FAST = dict(
    mediawiki={"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5},
    coordination={"lease_ttl": TTL, "safety_margin": 2, "renew_interval": 3,
                  "poll_interval_ms": 200},
    scan={"interval": 1, "full_interval": 2},
    # One lane per wiki: these tests check one lease slot's protocol (fencing, expiry,
    # takeover) by which batches of a wiki overlap; test_lanes.py checks lanes, and
    # test_spare_workers_... below opens extra slots itself.
    drain={"time_slice": 1, "backoff_base": 1, "backoff_max": 5, "max_workers_per_wiki": 1},
)
SMALL = ["w%02d.farm.test" % i for i in range(1, 21)]
_REQ = re.compile(r"POST /w/index\.php\?jobdrainer_holder=([^& ]+)&jobdrainer_lease=(\d+) ")


@pytest.fixture(scope="module")
def farm20():
    d = tempfile.mkdtemp(prefix="jdlease-", dir="/tmp")
    os.chmod(d, 0o755)
    f = Farm(os.path.join(d, "farm"))
    f.start()
    for domain in SMALL:
        f.add_wiki(domain)
    yield f
    f.stop()
    shutil.rmtree(d, ignore_errors=True)


def ini(farm, **more):
    sections = {k: dict(v) for k, v in FAST.items()}
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


def requests(farm, host=None, since=0.0):
    """RunJobs requests seen by Apache: (start, end, holder, token, host), by start."""
    out = []
    for e in farm.access_log_entries():
        m = _REQ.match(e["request"])
        if not m or e["start"] < since or (host and e["host"] != host):
            continue
        out.append((e["start"], e["start"] + e["duration_us"] / 1e6,
                    urllib.parse.unquote(m.group(1)), int(m.group(2)), e["host"]))
    return sorted(out)


def holder_of(farm, domain):
    rows = farm.sql("SELECT holder, token FROM jobdrainer.jd_lease WHERE name = %s AND slot = 0"
                    " AND expires_at > NOW(6)", (domain,))
    return (rows[0][0], rows[0][1]) if rows and rows[0][0] else (None, None)


def pod_of(pods, holder):
    name = holder.rsplit(":", 1)[0]
    return next(p for p in pods if p.name == name)


def start_pods(sidecars, farm, n, prefix="pod", **more):
    return [sidecars("%s%d" % (prefix, i), ini(farm, **more)) for i in range(1, n + 1)]


def test_three_sidecars_never_run_two_batches_on_one_wiki(farm20, sidecars):
    farm = farm20
    t0 = time.time()
    for d in SMALL:
        farm.push_null_jobs(d, 120, usleep_us=4000)
    pods = start_pods(sidecars, farm, 3)
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in SMALL), timeout=180,
               what="20 wikis drained by 3 sidecars")
    reqs = requests(farm, since=t0)
    by_host = {}
    for r in reqs:
        by_host.setdefault(r[4], []).append(r)
    assert set(by_host) == set(SMALL)
    switched = 0
    for host, rs in by_host.items():
        for a, b in zip(rs, rs[1:]):
            # b starts after a ended: never two batches of one wiki in flight at once.
            assert b[0] >= a[1] - 0.002, "overlap on %s: %s then %s" % (host, a, b)
            switched += a[2] != b[2]
        # One lease token is only ever used by one holder.
        owners = {}
        for r in rs:
            assert owners.setdefault(r[3], r[2]) == r[2], (host, r)
    # The pods did take turns on wikis (time_slice = 1 s), so the check above had
    # something to catch.
    assert switched >= 5, switched
    holders = {r[2].rsplit(":", 1)[0] for r in reqs}
    assert holders == {"pod1", "pod2", "pod3"}
    for p in pods:
        assert p.stop() == 0


def _slow_wiki(farm, domain, jobs=60, usleep=200000):
    farm.push_null_jobs(domain, jobs, usleep_us=usleep)    # 10 jobs a batch: 2 s batches


def test_kill_9_mid_batch_others_take_over_within_ttl(farm20, sidecars):
    farm = farm20
    domain = SMALL[0]
    _slow_wiki(farm, domain)
    pods = start_pods(sidecars, farm, 3, prefix="k")
    holder, _ = wait_until(lambda: holder_of(farm, domain)[0] and holder_of(farm, domain),
                           timeout=30, interval=0.05, what="a lease on " + domain)
    victim = pod_of(pods, holder)
    # Mid-batch: wait until Apache is serving one of its requests for the wiki.
    time.sleep(0.5)
    t_kill = time.time()
    victim.proc.kill()
    victim.proc.wait()
    wait_until(lambda: farm.ready_jobs(domain) == 0, timeout=120, what="drained by the rest")
    after = [r for r in requests(farm, domain, since=t_kill) if r[2] != holder]
    assert after, "nobody took over"
    took = after[0][0] - t_kill
    # Lease TTL + one scan interval (+ slack for the poll and a loaded machine).
    assert took <= TTL + 1 + 3, took
    for p in pods:
        if p is not victim:
            assert p.stop() == 0


def test_sigstop_beyond_ttl_sends_no_batch_under_the_lost_lease(farm20, sidecars):
    farm = farm20
    domain = SMALL[1]
    _slow_wiki(farm, domain, jobs=120)
    pods = start_pods(sidecars, farm, 3, prefix="s")
    holder, token = wait_until(lambda: holder_of(farm, domain)[0] and holder_of(farm, domain),
                               timeout=30, interval=0.05, what="a lease on " + domain)
    stopped = pod_of(pods, holder)
    time.sleep(0.3)
    t_stop = time.time()
    stopped.send(signal.SIGSTOP)
    # Another sidecar takes the wiki over once the lease expires.
    wait_until(lambda: any(r[2] != holder for r in requests(farm, domain, since=t_stop)),
               timeout=TTL + 15, what="a takeover")
    t_cont = time.time()
    stopped.send(signal.SIGCONT)
    time.sleep(6)
    # Under the old token the stopped holder sent nothing after it was stopped.
    late = [r for r in requests(farm, domain, since=t_stop)
            if r[2] == holder and r[3] == token]
    assert late == [], late
    assert stopped.proc.poll() is None, "the stopped sidecar must survive"
    assert t_cont > t_stop + TTL
    wait_until(lambda: farm.ready_jobs(domain) == 0, timeout=120, what="drained")
    for p in pods:
        assert p.stop() == 0


def test_sigterm_releases_leases_for_an_immediate_takeover(farm20, sidecars):
    farm = farm20
    domain = SMALL[2]
    _slow_wiki(farm, domain, jobs=80)
    pods = start_pods(sidecars, farm, 2, prefix="t")
    holder, _ = wait_until(lambda: holder_of(farm, domain)[0] and holder_of(farm, domain),
                           timeout=30, interval=0.05, what="a lease on " + domain)
    leaving = pod_of(pods, holder)
    assert leaving.stop(signal.SIGTERM) == 0
    t_exit = time.time()
    assert any(l.get("msg") == "stopped" for l in leaving.lines())
    other = wait_until(lambda: [r for r in requests(farm, domain, since=t_exit - 1)
                                if r[2] != holder], timeout=TTL, what="takeover")
    # Right away, not after the TTL: the lease was released, not left to expire.
    assert other[0][0] - t_exit < 3, other[0][0] - t_exit
    wait_until(lambda: farm.ready_jobs(domain) == 0, timeout=120, what="drained")
    for p in pods:
        if p is not leaving:
            assert p.stop() == 0


def test_mariadb_killed_and_restarted_mid_run(farm20, sidecars):
    farm = farm20
    wikis = SMALL[3:8]
    for d in wikis:
        _slow_wiki(farm, d, jobs=40, usleep=100000)
    pods = start_pods(sidecars, farm, 2, prefix="m")
    wait_until(lambda: len(requests(farm, since=time.time() - 2)) > 0, timeout=30,
               what="draining to start")
    t_kill = time.time()
    farm.kill_mysql()
    time.sleep(6)
    t_restart = time.time()
    # While the database is down no new batch starts (one decided just before the
    # kill may reach Apache a moment later).
    during = [r for r in requests(farm, since=t_kill + 1.0) if r[0] < t_restart]
    farm.restart_mysql()
    for p in pods:
        assert p.proc.poll() is None, p.raw()[-3000:]
    assert during == [], during
    # Everything resumes: jobs that were not in flight at the kill all run.
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in wikis), timeout=180,
               what="drained after the restart")
    assert any(r[0] > t_restart for r in requests(farm, since=t_restart))
    text = "".join(p.raw() for p in pods)
    assert "database failed" in text or "cannot be confirmed" in text
    for p in pods:
        assert p.stop() == 0


def test_ten_sidecars_create_the_schema_once(farm20, sidecars, tmp_path):
    farm = farm20
    farm.sql("DROP DATABASE IF EXISTS jobdrainer")
    pods = [Sidecar(str(tmp_path), "ten%d" % i, ini(farm)) for i in range(10)]
    # All ten at once, on a coordination database that does not exist yet.
    for p in pods:
        p.launch()
    try:
        for p in pods:
            p.wait_for(lambda l: l.get("msg") == "coordination schema ready", timeout=60,
                       what="schema ready")
        farm.push_null_jobs(SMALL[8], 30)
        wait_until(lambda: farm.ready_jobs(SMALL[8]) == 0, timeout=60, what="drained")
        rows = farm.sql("SELECT id, version FROM jobdrainer.jd_schema")
        # Version 2: jd_wiki's orphaned-claims columns (issue 14); 3: jd_pause (issue 11).
        assert [tuple(r) for r in rows] == [(1, 3)]
        for p in pods:
            bad = [l for l in p.lines() if l.get("severity") == "ERROR"]
            assert bad == [], bad
    finally:
        for p in pods:
            assert p.stop() == 0


def test_fairness_small_wikis_run_within_30s_while_a_big_one_drains(tmp_path, sidecars):
    d = tempfile.mkdtemp(prefix="jdfair-", dir="/tmp")
    os.chmod(d, 0o755)
    farm = Farm(os.path.join(d, "farm"))
    try:
        farm.start()
        big = "big.farm.test"
        small = ["s%02d.farm.test" % i for i in range(30)]
        farm.add_wiki(big)
        for s in small:
            farm.add_wiki(s)
        farm.push_null_jobs(big, 20000, usleep_us=2000)
        pods = [sidecars("fair%d" % i, farm_ini(
            farm, sidecar={"workers": 2}, mediawiki={"maxjobs": 100, "maxtime": 10},
            scan={"interval": 2}, drain={"time_slice": 10},
            coordination={"poll_interval_ms": 500})) for i in (1, 2)]
        stop = threading.Event()
        rng = __import__("random").Random(7)

        def feed():
            while not stop.is_set():
                for s in rng.sample(small, 6):
                    farm2.insert_probe_jobs(s, rng.randint(1, 3), tag="fair")
                stop.wait(rng.uniform(1.0, 3.0))

        farm2 = Farm.load(farm.dir)   # its own DB connection for the feeder thread
        feeder = threading.Thread(target=feed)
        big_before = farm.ready_jobs(big)
        feeder.start()
        time.sleep(60)
        stop.set()
        feeder.join()
        wait_until(lambda: all(farm.ready_jobs(s) == 0 for s in small), timeout=60,
                   what="small wikis drained")
        runs = [r for r in farm.probe_runs() if r["tag"] == "fair"]
        pushed = sum(farm.total_jobs(s) for s in small)  # 0 left: all ran
        assert pushed == 0 and len(runs) > 50
        latency = sorted(r["ran"] - r["pushed"] for r in runs)
        assert latency[-1] <= 30, latency[-10:]
        big_after = farm.ready_jobs(big)
        assert big_before - big_after > 2000, (big_before, big_after)
        for p in pods:
            assert p.stop() == 0
    finally:
        farm.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_wiki_with_only_unrunnable_rows_is_parked(farm20, sidecars):
    farm = farm20
    domain = SMALL[9]
    farm.insert_raw_jobs(domain, 25)
    t0 = time.time()
    pod = sidecars("park", ini(farm))
    pod.wait_for(lambda l: l.get("msg", "").startswith("wiki parked") and l.get("wiki") == domain,
                 timeout=30, what="parked")
    time.sleep(60)
    seen = requests(farm, domain, since=t0)
    assert 1 <= len(seen) <= 3, seen
    assert farm.ready_jobs(domain) == 25
    status = farm.sql("SELECT parked_until > NOW(6), last_outcome FROM jobdrainer.jd_wiki "
                      "WHERE domain = %s", (domain,))
    assert status[0][0] == 1 and status[0][1] == "drained"
    # A new job unparks it at the next scan, and it runs.
    farm.push_null_jobs(domain, 3)
    wait_until(lambda: farm.ready_jobs(domain, cmd="null") == 0, timeout=30,
               what="new job run after unpark")
    assert pod.stop() == 0


def test_spare_workers_help_a_big_wiki_but_yield_to_waiting_ones(farm20, sidecars):
    farm = farm20
    big, small = SMALL[10], SMALL[11:14]
    # 40 s of work for one worker: while no wiki waits, its batches grow from 10 jobs to
    # 80 (sched_batch_size), so 12 requests take far more of it than 12 x 10 jobs.
    farm.push_null_jobs(big, 2000, usleep_us=20000)
    t0 = time.time()
    pod = sidecars("spare", ini(farm, sidecar={"workers": 3},
                                drain={"max_workers_per_wiki": 3, "time_slice": 60}))
    wait_until(lambda: len(requests(farm, big, since=t0)) >= 12, timeout=60,
               what="the big wiki's batches")
    # Extra lease slots: batches of the big wiki overlap, each under its own slot/token.
    reqs = requests(farm, big, since=t0)
    overlapping = sum(1 for a, b in zip(reqs, reqs[1:]) if b[0] < a[1])
    assert overlapping >= 3, reqs
    # A small wiki that starts waiting gets a worker within a batch or two.
    t_small = time.time()
    for d in small:
        farm.push_null_jobs(d, 5)
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in small), timeout=30,
               what="small wikis served while the big one drains")
    first = min(r[0] for d in small for r in requests(farm, d, since=t_small))
    assert first - t_small < 5, first - t_small
    assert farm.ready_jobs(big) > 0, "the big wiki should still be draining"
    wait_until(lambda: farm.ready_jobs(big) == 0, timeout=120, what="big wiki drained")
    assert pod.stop() == 0


def _first_request(farm, domain, since, timeout=60):
    return wait_until(lambda: requests(farm, domain, since=since), timeout=timeout,
                      interval=0.05, what="a batch on " + domain)[0]


def test_lease_is_confirmed_after_the_wiki_interval_right_before_the_batch(farm20, sidecars):
    """wiki_min_interval_ms longer than the lease TTL: the holder keeps its lease through
    the pause, and one stopped in the pause past the TTL sends nothing when it wakes
    (the lease was checked before the pause once; now right before each batch)."""
    farm = farm20
    domain = SMALL[14]
    farm.push_null_jobs(domain, 200)
    t0 = time.time()
    pods = start_pods(sidecars, farm, 2, prefix="gap",
                      drain={"wiki_min_interval_ms": (TTL + 5) * 1000, "time_slice": 300})
    first = _first_request(farm, domain, t0)
    holder, token = first[2], first[3]
    stopped = pod_of(pods, holder)
    # Apache logs a request when it ends: the holder is in its 20 s pause now, and
    # still holds the lease past the TTL, renewing it while it waits.
    time.sleep(TTL + 1)
    assert holder_of(farm, domain) == (holder, token)
    t_stop = time.time()
    stopped.send(signal.SIGSTOP)
    # The other sidecar takes the wiki over once the lease expired and the interval
    # since the last batch has passed.
    other = wait_until(lambda: [r for r in requests(farm, domain, since=t_stop)
                                if r[2] != holder], timeout=TTL + 30, what="a takeover")
    stopped.send(signal.SIGCONT)
    time.sleep(6)
    late = [r for r in requests(farm, domain, since=t_stop) if r[2] == holder and r[3] == token]
    assert late == [], late
    assert stopped.proc.poll() is None, "the stopped sidecar must survive"
    # Fencing, judged from the server side: a batch never starts under a lease token
    # older than one some earlier batch of the wiki was sent with.
    reqs = requests(farm, domain, since=t0)
    for a, b in zip(reqs, reqs[1:]):
        assert b[3] >= a[3], "batch %s sent after %s" % (b, a)
    assert other[0][3] > token
    for p in pods:
        assert p.stop() == 0
    farm.run_jobs_php(domain)


def test_sigterm_during_the_wiki_interval_exits_in_time_and_releases(farm20, sidecars):
    farm = farm20
    domain = SMALL[15]
    farm.push_null_jobs(domain, 100)
    t0 = time.time()
    pod = sidecars("pause", ini(farm, sidecar={"shutdown_timeout": 5},
                                drain={"wiki_min_interval_ms": 60000, "time_slice": 300}))
    first = _first_request(farm, domain, t0)
    assert holder_of(farm, domain)[0] == first[2]
    # In the 60 s pause: the exit comes within shutdown_timeout (5 s; the stop allows
    # a loaded machine 10 s more), not at the end of the pause.
    assert pod.stop(signal.SIGTERM, timeout=15) == 0
    assert any(l.get("msg") == "stopped" for l in pod.lines())
    assert holder_of(farm, domain) == (None, None)
    rows = farm.sql("SELECT holder FROM jobdrainer.jd_lease WHERE name = %s", (domain,))
    assert all(r[0] is None for r in rows), rows
    assert len(requests(farm, domain, since=t0)) == 1
    farm.run_jobs_php(domain)
