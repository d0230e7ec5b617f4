"""The pod stays a polite guest: rate limits, the concurrency cap, adaptive backoff and
the MediaWiki circuit breaker, measured from the server side (a counting fault
injector in front of, or instead of, the real MediaWiki) and on the real farm."""

import time

from faults import FaultProxy, slow_ok
from sidecar import farm_ini, wait_until

GOOD = ("wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test")


def _always_more(proxy, hold=0.0):
    """Every wiki always has more: each answer is job-limit after `hold` seconds."""
    proxy.default = slow_ok(hold, reached="job-limit")


def test_batches_per_second_holds_at_the_server(farm, sidecars):
    for d in GOOD:
        farm.push_null_jobs(d, 1)        # so the scan lists them as having work
    proxy = FaultProxy()
    _always_more(proxy)
    try:
        pod = sidecars("rate", farm_ini(farm, sidecar={"workers": 3},
                                        mediawiki={"port": proxy.port},
                                        drain={"batches_per_second": 2}))
        wait_until(lambda: proxy.count(0, time.time() + 1) > 0, timeout=30,
                   what="first request")
        # The window: 2/s over 10 s is 20 batches, against hundreds a second unpaced
        # (instant answers, three workers); long enough that the bucket's burst (2) and
        # a late start are a small part of it, so both bounds mean something.
        t0 = time.time()
        time.sleep(10)
        n = proxy.count(t0, t0 + 10)
        # 2/s over 10 s, plus at most one second's burst of the bucket.
        assert 15 <= n <= 2 * 10 + 2, n
        for s in range(10):
            assert proxy.count(t0 + s, t0 + s + 1) <= 3, s
        assert pod.stop() == 0
    finally:
        proxy.close()
    for d in GOOD:
        farm.run_jobs_php(d)


def test_concurrency_cap_is_never_exceeded(farm, sidecars):
    for d in GOOD:
        farm.push_null_jobs(d, 1)
    proxy = FaultProxy()
    _always_more(proxy, hold=0.5)
    try:
        pod = sidecars("cap", farm_ini(farm, sidecar={"workers": 2},
                                       mediawiki={"port": proxy.port},
                                       drain={"batches_per_second": 0}))
        # Twenty batches (about 5 s at two in flight for 0.5 s each): enough overlap
        # for a third to have started, were the cap not kept.
        wait_until(lambda: proxy.count(0, time.time()) >= 20, timeout=30,
                   what="twenty batches")
        assert proxy.max_in_flight == 2, proxy.max_in_flight
        metrics = pod.metrics()
        assert metrics["jobdrainer_concurrency_limit"] == 2
        assert pod.stop() == 0
    finally:
        proxy.close()
    for d in GOOD:
        farm.run_jobs_php(d)


def test_503_for_30s_halves_the_rate_quickly_and_recovers(farm, sidecars):
    for d in GOOD:
        farm.push_null_jobs(d, 1)
    proxy = FaultProxy()
    _always_more(proxy, hold=0.05)
    try:
        pod = sidecars("breaker", farm_ini(
            farm, sidecar={"workers": 2}, mediawiki={"port": proxy.port},
            drain={"batches_per_second": 10, "backoff_base": 2, "backoff_max": 8,
                   "breaker_failures": 3}))
        time.sleep(8)
        t_bad = time.time()
        before = proxy.count(t_bad - 5, t_bad) / 5.0
        assert before >= 5, before
        proxy.default = (503, b"<h1>Service Unavailable</h1>", "text/html")
        time.sleep(30)
        t_good = time.time()
        # The third failed batch after the switch is the third decision: from then on
        # the rate must be at most half of what it was.
        starts = sorted(t for t, _ in proxy.starts if t >= t_bad)
        third = starts[2]
        during = proxy.count(third, t_good) / (t_good - third)
        assert during <= before / 2, (before, during)
        line = pod.wait_for(lambda l: l.get("msg", "").startswith("mediawiki breaker open"),
                            what="breaker open")
        assert line["severity"] == "ERROR" and "pausing" in line["next"]
        assert pod.metrics()["jobdrainer_mediawiki_breaker_open"] == 1
        _always_more(proxy, hold=0.05)
        pod.wait_for(lambda l: l.get("msg", "").startswith("mediawiki breaker closed"),
                     timeout=30, what="breaker closed")
        # Back to at least half the old rate within 15 s of the breaker closing (it
        # was a fixed 15 s wait, then one look).
        wait_until(lambda: proxy.count(time.time() - 5, time.time()) / 5.0 >= before / 2,
                   timeout=15, interval=0.5, what="the rate back to half of %s/s" % before)
        assert pod.metrics()["jobdrainer_mediawiki_breaker_open"] == 0
        assert pod.stop() == 0
    finally:
        proxy.close()
    for d in GOOD:
        farm.run_jobs_php(d)


def test_batch_rate_on_the_real_farm(farm, sidecars):
    for d in GOOD:
        farm.push_null_jobs(d, 400, usleep_us=1000)
    pod = sidecars("rate-real", farm_ini(farm, sidecar={"workers": 2},
                                         # 5 jobs a batch throughout (no growth
                                         # while alone): the backlog outlasts the window.
                                         mediawiki={"maxjobs": 5, "maxjobs_alone": 5},
                                         drain={"batches_per_second": 2}))
    wait_until(lambda: any(farm.ready_jobs(d) < 400 for d in GOOD), timeout=30,
               what="draining")
    # 10 s at 2/s: 20 batches against about 20 a second unpaced on this farm, the
    # bucket's burst (2) a tenth of it.
    t0 = time.time()
    time.sleep(10)
    posts = [e for e in farm.access_log_entries()
             if "jobdrainer_holder=rate-real" in e["request"] and t0 <= e["start"] < t0 + 10]
    assert 15 <= len(posts) <= 22, len(posts)
    assert pod.stop() == 0
    for d in GOOD:
        farm.run_jobs_php(d)
