"""jobdrainer drains a real farm: real MariaDB, Debian's MediaWiki under Apache/mod_php.

Proof comes from the MediaWiki side: job tables emptied, link tables filled by the
refreshLinks jobs, and the web server's access log showing the sidecar's signed POSTs."""

import signal
import time

from sidecar import farm_ini, wait_until

WIKIS = ("wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test")


def test_drains_every_wiki_and_the_jobs_really_run(farm, sidecars):
    links = {}
    for domain in WIKIS:
        farm.push_null_jobs(domain, 250)
        links[domain] = farm.make_link_jobs(domain, pages=4)
        assert farm.ready_jobs(domain) >= 250
        # Before the jobs run, the pages still link to the template's old target.
        assert farm.links_to(domain, links[domain]["new_target"]) == []

    pod = sidecars("pod-a", farm_ini(farm))
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in WIKIS), timeout=120,
               what="every queue drained")

    for domain in WIKIS:
        # refreshLinks really ran: every transcluding page now links to the new target.
        assert farm.links_to(domain, links[domain]["new_target"]) == links[domain]["pages"]
        assert farm.total_jobs(domain) == 0, farm.job_counts(domain)
        pod.wait_for(lambda l, d=domain: l.get("wiki") == d and l.get("outcome") == "drained",
                     what="drained batch of " + domain)

    batches = pod.batches()
    assert sum(b["jobs_ok"] for b in batches) >= 3 * 250
    assert all(b["http_status"] == 200 for b in batches), batches
    assert {b["reached"] for b in batches} <= {"none-ready", "job-limit", "time-limit"}

    # The web server saw signed POSTs for each wiki, naming this sidecar as holder.
    posts = [e for e in farm.access_log_entries()
             if e["request"].startswith("POST /w/index.php?jobdrainer_holder=pod-a")]
    assert {e["host"] for e in posts} >= set(WIKIS)
    assert all(e["status"] == 200 for e in posts)
    assert all(e["user_agent"].startswith("jobdrainer/") for e in posts)

    assert pod.stop() == 0
    assert pod.lines()[-1]["msg"] == "stopped"


def test_startup_line_names_versions_and_limits(farm, sidecars):
    pod = sidecars("pod-b", farm_ini(farm, sidecar={"workers": 3},
                                     mediawiki={"maxjobs": 77, "maxtime": 9}))
    start = pod.lines()[0]
    assert start["msg"] == "jobdrainer starting"
    assert start["severity"] == "INFO"
    for key in ("version", "libcurl", "libmariadb", "jansson", "openssl", "inih"):
        assert start[key], key
    assert (start["workers"], start["maxjobs"], start["maxtime_s"]) == (3, 77, 9)
    assert start["holder"] == "pod-b:%d" % pod.pid
    assert "jdpass" not in pod.raw()
    assert pod.stop() == 0


def test_text_log_format_is_key_value(farm, sidecars):
    farm.push_null_jobs("wiki2.farm.test", 20)
    # The shipped level: one line per drain of a wiki.
    pod = sidecars("pod-text", farm_ini(farm, sidecar={"log_format": "text",
                                                       "log_level": "info"}))
    line = pod.wait_for(lambda l: l.get("msg") == "drain" and l.get("wiki") == "wiki2.farm.test",
                        what="a drain line")
    assert line["level"] == "info"
    assert line["last_outcome"] in ("drained", "more") and int(line["drain_jobs_ok"]) > 0, line
    raw = [r for r in pod.raw().splitlines() if "msg=drain " in r][0]
    assert raw.startswith("ts=") and " level=info msg=drain wiki=wiki2.farm.test lane=1 " in raw
    assert "msg=batch " not in pod.raw()
    assert pod.stop() == 0


def test_sigterm_lets_the_batch_in_flight_finish(farm, sidecars):
    domain = "wiki3.farm.test"
    # 40 jobs of 100 ms: one batch takes about 4 s.
    farm.push_null_jobs(domain, 40, usleep_us=100000)
    pod = sidecars("pod-term", farm_ini(farm, sidecar={"workers": 1},
                                       mediawiki={"maxjobs": 40, "maxtime": 20}))
    wait_until(lambda: farm.ready_jobs(domain) < 40, timeout=30, interval=0.05,
               what="the batch to start")
    assert pod.stop(signal.SIGTERM) == 0
    msgs = [l.get("msg") for l in pod.lines()]
    stopping = msgs.index("stopping")
    # The batch in flight finished after the signal and before the exit.
    after = [l for l in pod.lines()[stopping:] if l.get("msg") == "batch"]
    assert after and after[0]["wiki"] == domain and after[0]["jobs_ok"] > 0, pod.raw()
    assert msgs[-1] == "stopped"
    assert farm.ready_jobs(domain) == 0 or after[0]["outcome"] == "more"


def test_shutdown_timeout_abandons_a_long_batch(farm, sidecars):
    domain = "wiki1.farm.test"
    farm.push_null_jobs(domain, 30, usleep_us=500000)   # a 15 s batch
    pod = sidecars("pod-abandon", farm_ini(farm, sidecar={"workers": 1, "shutdown_timeout": 1},
                                          mediawiki={"maxjobs": 30, "maxtime": 25},
                                          coordination={"lease_ttl": 90}))
    wait_until(lambda: farm.ready_jobs(domain) < 30, timeout=30, interval=0.05,
               what="the batch to start")
    t0 = time.monotonic()
    assert pod.stop(signal.SIGTERM, timeout=20) == 0
    assert time.monotonic() - t0 < 8
    line = pod.wait_for(lambda l: l.get("outcome") == "aborted", what="aborted batch")
    assert line["next"] == "shutting down"
    assert any(l.get("msg") == "shutdown_timeout reached: abandoning batches in flight"
               for l in pod.lines())
    # Let MediaWiki finish the jobs it had claimed, then clean up for later tests.
    wait_until(lambda: farm.ready_jobs(domain) == 0 or farm.run_jobs_php(domain) is None,
               timeout=60, what="cleanup")


def test_a_lone_wikis_batches_grow_and_shrink_when_another_waits(farm, sidecars):
    big, small = "wiki2.farm.test", "wiki3.farm.test"
    assert farm.total_jobs(big) == 0 and farm.total_jobs(small) == 0
    farm.push_null_jobs(big, 12000, usleep_us=1000)
    # One worker: while it drains the big wiki alone, each batch asks for twice the last
    # (these are short: well under the second after which growth stops).
    pod = sidecars("pod-grow", farm_ini(farm, sidecar={"workers": 1},
                                        mediawiki={"maxjobs": 20, "maxjobs_alone": 160},
                                        drain={"time_slice": 15}))
    pod.wait_for(lambda l: l.get("wiki") == big and l.get("maxjobs") == 160, timeout=180,
                 what="a 160-job batch")
    # A small wiki gets jobs: it waits for the worker, so the big wiki's next batches are
    # small again until its time slice ends and the small wiki is served.
    farm.push_null_jobs(small, 20)
    pod.wait_for(lambda l: l.get("wiki") == small and l.get("msg") == "batch", timeout=180,
                 what="the small wiki served")
    wait_until(lambda: farm.ready_jobs(big) == 0 and farm.ready_jobs(small) == 0, timeout=300,
               what="both drained")
    pod.wait_for(lambda l: l.get("wiki") == big and l.get("outcome") == "drained",
                 timeout=60, what="the big wiki's last batch")

    # (An earlier test's wiki may get a batch too: its last scan can still show rows.)
    batches = [b for b in pod.batches() if b["wiki"] in (big, small)]
    sizes = [(b["wiki"][:5], b["maxjobs"]) for b in batches]
    first_small = next(i for i, b in enumerate(batches) if b["wiki"] == small)
    before = [b["maxjobs"] for b in batches[:first_small]]
    assert before[:4] == [20, 40, 80, 160], sizes
    # Shrunk back while the small wiki waited: a 20-job batch after the 160-job ones.
    grown = before.index(160)
    assert 20 in before[grown:], sizes
    assert batches[first_small]["maxjobs"] == 20
    # MediaWiki honoured the size sent: no batch ran more, and full ones ran exactly it.
    assert all(b["jobs_ok"] + b["jobs_failed"] <= b["maxjobs"] for b in batches), batches
    assert any(b["jobs_ok"] == 160 and b["reached"] == "job-limit" for b in batches), batches
    # Back to the big wiki alone afterwards: it starts small and grows again.
    after = [b["maxjobs"] for b in batches[first_small + 1:] if b["wiki"] == big]
    assert after[:2] == [20, 40] or len(after) < 2, sizes
