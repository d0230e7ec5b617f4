"""Reload without restart, on the real farm: limits change on a running sidecar (seen at
Apache), a broken file is refused and the old limits hold, the lease survives, keys
that need a restart are named and kept."""

import re
import signal
import time

from sidecar import farm_ini, wait_until

WIKI = "wiki1.farm.test"


def posts(farm, holder, since=0.0):
    """RunJobs POSTs of this sidecar seen by Apache: (start, lease token)."""
    out = []
    for e in farm.access_log_entries():
        m = re.match(r"POST /w/index.php\?jobdrainer_holder=([^&]+)&jobdrainer_lease=(\d+)",
                     e["request"])
        if m and m.group(1).startswith(holder) and e["start"] >= since:
            out.append((e["start"], int(m.group(2))))
    return out


def ini(farm, **drain):
    # maxjobs_alone = maxjobs: batches keep the size the test sets (no growth while
    # the wiki drains alone), so the job rate is what the limits make it.
    maxjobs = drain.pop("maxjobs", 5)
    return farm_ini(farm, sidecar={"workers": 1, "reload_check_interval": 1},
                    mediawiki={"maxjobs": maxjobs, "maxjobs_alone": maxjobs},
                    drain=dict({"time_slice": 3600}, **drain))


def rewrite(pod, text):
    with open(pod.ini, "w") as f:
        f.write(text)


def test_limits_change_live_and_a_broken_file_is_refused(farm, sidecars):
    # 20 ms jobs in batches of 5: about 0.1 s a batch, so the pod's batch rate is what
    # the limit makes it. One wiki, one worker, a long time slice: one lease throughout.
    # 1500 jobs: the steps below take about 700 at this machine's best speed (fewer on a
    # slow one), and the queue is drained at the end (3000 took 30 s more for nothing).
    farm.push_null_jobs(WIKI, 1500, usleep_us=20000)
    pod = sidecars("reload", ini(farm, batches_per_second=2))
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == WIKI, timeout=60,
                 what="draining")
    time.sleep(4)
    t_before = time.time()
    time.sleep(5)
    before = posts(farm, "reload", since=t_before)
    # The token bucket allows 2 a second (plus at most its burst of 2).
    assert 0 < len(before) <= 2 * 5 + 2, before
    assert all(b["jobs_ok"] <= 5 for b in pod.batches(WIKI))

    rewrite(pod, ini(farm, batches_per_second=50, maxjobs=40))
    line = pod.wait_for(lambda l: l.get("msg") == "configuration reloaded", timeout=30,
                        what="the reload")
    assert line["trigger"] == "file changed"
    assert "[drain] batches_per_second" in line["changed"]
    assert "[mediawiki] maxjobs" in line["changed"]
    n = len(pod.batches(WIKI))
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("jobs_ok", 0) > 5, timeout=30,
                 what="a batch of more than 5 jobs")
    t_after = time.time()
    time.sleep(5)
    after = posts(farm, "reload", since=t_after)
    # Requests now carry up to 40 jobs at up to 50 a second: far more jobs per second.
    jobs_before = sum(b["jobs_ok"] for b in pod.batches(WIKI)[:n][-len(before):])
    jobs_after = sum(b["jobs_ok"] for b in pod.batches(WIKI)[-len(after):])
    assert jobs_after > 2 * jobs_before, (jobs_before, jobs_after)
    # The lease survived the reload: every request before and after under one token.
    tokens = {t for _, t in posts(farm, "reload")}
    assert len(tokens) == 1, tokens
    assert pod.metrics()['jobdrainer_errors_total{kind="lease_lost"}'] == 0

    # A typo is refused with the usual FILE:LINE message; the limits in force stay.
    rewrite(pod, ini(farm, batches_per_second="fast", maxjobs=40))
    bad = pod.wait_for(lambda l: l.get("msg") == "configuration reload refused: the file has "
                       "errors", timeout=30, what="the refusal")
    assert re.search(r"reload\.ini:\d+: \[drain\] batches_per_second: 'fast' is not a whole "
                     r"number", bad["errors"]), bad
    n = len(pod.batches(WIKI))
    wait_until(lambda: len(pod.batches(WIKI)) >= n + 5, timeout=30, what="more batches")
    assert any(b["jobs_ok"] > 5 for b in pod.batches(WIKI)[n:]), "the old maxjobs (40) held"
    assert pod.proc.poll() is None

    # SIGHUP reloads too; keys a running daemon cannot change are named and kept.
    text = ini(farm, batches_per_second=50, maxjobs=40).replace(
        "listen = 127.0.0.1:0", "listen = 127.0.0.1:1")
    rewrite(pod, text)
    pod.send(signal.SIGHUP)
    warn = pod.wait_for(lambda l: l.get("msg") == "configuration reload: these keys change "
                        "only on restart", timeout=30, what="kept keys")
    assert warn["keys"] == "[http] listen"
    assert pod.get("/healthz")[0] == 200          # still on the old port
    wait_until(lambda: farm.total_jobs(WIKI) == 0, timeout=300, what="drained")
    assert len({t for _, t in posts(farm, "reload")}) == 1
    assert pod.stop() == 0


def test_unchanged_file_and_sighup(farm, sidecars):
    info = ini(farm).replace("log_level = debug", "log_level = info")
    pod = sidecars("reload-hup", info)
    pod.send(signal.SIGHUP)
    line = pod.wait_for(lambda l: l.get("msg", "").startswith("configuration reloaded"),
                        timeout=30, what="the reload")
    assert line["msg"] == "configuration reloaded: nothing changed" and line["trigger"] == "SIGHUP"
    # A log level raised live: debug lines (the scan's) appear.
    rewrite(pod, ini(farm))  # the tests' INI: log_level = debug
    pod.wait_for(lambda l: l.get("msg") == "configuration reloaded", timeout=30, what="reload")
    pod.wait_for(lambda l: l.get("severity") == "DEBUG", timeout=30, what="a debug line")
    # More workers than threads started: said so (a restart starts them).
    rewrite(pod, ini(farm).replace("workers = 1", "workers = 3"))
    line = pod.wait_for(lambda l: l.get("msg") == "configuration reload: more workers than "
                        "threads started", timeout=30, what="the workers warning")
    assert (line["workers"], line["threads"]) == (3, 1)
    assert pod.stop() == 0


def test_a_file_cut_short_is_refused_and_the_old_limits_hold(farm, sidecars):
    # skip_types is what a cut file used to reset silently: left out, it falls back to
    # its default (run every type).
    full = ini(farm, skip_types="farm*")
    pod = sidecars("reload-cut", full)
    cuts = [
        # A non-atomic write caught between sections: [drain] is gone.
        (full[:full.index("[drain]")], "[drain] is gone"),
        # Caught mid-line: "skip_types = fa" parses, but the line has no newline.
        (full[:full.index("skip_types = farm*") + len("skip_types = fa")], "has no newline"),
        # Caught right after the truncation.
        ("", "sets no key"),
    ]
    for text, why in cuts:
        rewrite(pod, text)
        line = pod.wait_for(lambda l, w=why: l.get("msg") == "configuration reload refused: "
                            "the file looks cut short" and w in l.get("why", ""), timeout=30,
                            what="the refusal: " + why)
        assert line["trigger"] == "file changed" and line["severity"] == "ERROR", line
    assert not [l for l in pod.lines() if l.get("msg", "").startswith("configuration reloaded")]
    # The limits in force held: the skipped type is still left alone.
    farm.push_null_jobs(WIKI, 30)
    farm.push_probe_jobs(WIKI, 3, tag="reload-cut")
    wait_until(lambda: farm.ready_jobs(WIKI, cmd="null") == 0, timeout=90, what="nulls drained")
    assert farm.ready_jobs(WIKI, cmd="farmProbe") == 3
    # The write completes: the whole file is loaded.
    rewrite(pod, full.replace("skip_types = farm*", "skip_types = farm*, nosuch"))
    line = pod.wait_for(lambda l: l.get("msg") == "configuration reloaded", timeout=30,
                        what="the complete file reloaded")
    assert line["changed"] == "[drain] skip_types", line
    assert pod.stop() == 0
    farm.sql("DELETE FROM %s" % farm.wiki(WIKI).job_table)
