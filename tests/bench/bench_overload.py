#!/usr/bin/python3
"""Overload: what jobdrainer does to a MediaWiki that is struggling, and what job
running costs ordinary page views, next to runJobs.php loops doing the same work.

Part 1, "MediaWiki made slow": jobdrainer drains fast jobs (before), then jobs that
sleep past maxtime (during: every batch runs 60% over maxtime, which the limiter
counts as slow), then fast jobs again (after). Reported per phase: RunJobs requests per
second Apache saw from the sidecar and the sidecar's concurrency limit.

Part 2, page views: `ab` fetches a wiki's Main Page (c=2) from the same Apache while
(a) nothing runs jobs, (b) jobdrainer (defaults: 2 workers, 10 batches/s) drains a
CPU-heavy backlog, (c) one `runJobs.php` loop per wiki (the shipped approach's loop,
`runJobs.php --maxjobs 1000; sleep 1`) drains the same backlog. Reported: page-view
latency p50/p95/p99 and the added latency against (a), and how long each runner took.

    /usr/bin/python3 tests/bench/bench_overload.py [--out tests/bench/results/overload.md]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
from bench_common import new_workdir, write_report  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402

WIKIS = ["ov%d.farm.test" % i for i in range(1, 7)]
PHASE = 30  # seconds per phase of part 1


def rate_per_phase(farm, holder, t0, phases):
    out = []
    entries = [e for e in farm.access_log_entries()
               if "jobdrainer_holder=%s" % holder in e["request"]]
    for name, start, end in phases:
        n = sum(1 for e in entries if start <= e["start"] < end)
        out.append((name, n / (end - start)))
    return out


def part1(farm, workdir):
    ini = farm_ini(farm, sidecar={"workers": 2},
                  mediawiki={"maxjobs": 50, "maxtime": 5, "timeout_allowance": 10},
                  drain={"batches_per_second": 10},
                  coordination={"lease_ttl": 30})
    pod = Sidecar(workdir, "overload", ini).start()
    limits = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                limits.append((time.time(), pod.metrics()["jobdrainer_concurrency_limit"]))
            except Exception:  # noqa: BLE001 - a sample may fail under load
                pass
            stop.wait(1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for w in WIKIS:
            farm.push_null_jobs(w, 3000, usleep_us=2000)
        t0 = time.time()
        time.sleep(PHASE)
        # During: every job sleeps 8 s, past maxtime (5 s): each batch returns after one
        # job, 8 s, which the limiter counts as slow.
        for w in WIKIS:
            farm.sql("DELETE FROM %s" % farm.wiki(w).job_table)
            farm.push_null_jobs(w, 40, usleep_us=8000000)
        t1 = time.time()
        time.sleep(PHASE)
        for w in WIKIS:
            farm.sql("DELETE FROM %s WHERE job_token = ''" % farm.wiki(w).job_table)
            farm.push_null_jobs(w, 3000, usleep_us=2000)
        t2 = time.time()
        time.sleep(PHASE)
        t3 = time.time()
    finally:
        stop.set()
        sampler.join()
        pod.stop()
    phases = [("before (fast jobs)", t0, t1), ("during (jobs sleep 8 s > maxtime 5 s)", t1, t2),
              ("after (fast jobs)", t2, t3)]
    rates = rate_per_phase(farm, "overload", t0, phases)
    lim = []
    for name, start, end in phases:
        vals = [v for t, v in limits if start <= t < end]
        lim.append((min(vals) if vals else None, vals[-1] if vals else None))
    for w in WIKIS:
        farm.sql("DELETE FROM %s" % farm.wiki(w).job_table)
    return phases, rates, lim


def ab(farm, seconds=20):
    """Page views for `seconds`: returns (requests, p50, p95, p99, mean) in ms."""
    url = "http://127.0.0.1:%d/w/index.php?title=Main_Page" % farm.http_port
    r = subprocess.run(["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", "2",
                        "-H", "Host: %s" % WIKIS[0], url], capture_output=True, text=True,
                       timeout=seconds + 60)
    text = r.stdout
    done = int(re.search(r"Complete requests:\s+(\d+)", text).group(1))
    mean = float(re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", text).group(1))
    pct = {int(m.group(1)): float(m.group(2))
           for m in re.finditer(r"^\s+(\d+)%\s+(\d+)", text, re.M)}
    return done, pct.get(50), pct.get(95), pct.get(99), mean


def cpu_backlog(farm, tag):
    # 6 wikis x 150 jobs x 40 ms of CPU: 36 CPU-seconds, like a burst of parses.
    for w in WIKIS:
        farm.push_probe_jobs(w, 150, spin_us=40000, tag=tag)


def part2(farm, workdir):
    results = {}
    results["no job runner"] = (ab(farm), None)

    cpu_backlog(farm, "jd")
    pod = Sidecar(workdir, "pageviews", farm_ini(farm)).start()
    t0 = time.time()
    views = ab(farm)
    wait_until(lambda: all(farm.total_jobs(w) == 0 for w in WIKIS), timeout=600,
               what="jobdrainer drained")
    results["jobdrainer (2 workers, defaults)"] = (views, time.time() - t0)
    pod.stop()

    cpu_backlog(farm, "php")
    loops = []
    t0 = time.time()
    for w in WIKIS:
        script = ("while [ \"$(%s)\" != 0 ]; do php %s/maintenance/runJobs.php --maxjobs 1000 "
                  ">/dev/null; sleep 1; done" % (
                      "mariadb -N -uroot -S %s -e \"SELECT COUNT(*) FROM %s.%s_job WHERE "
                      "job_token = ''\"" % (farm.socket, farm.wiki(w).dbname,
                                            farm.wiki(w).prefix),
                      "/usr/share/mediawiki"))
        loops.append(subprocess.Popen(["sh", "-c", script], env=farm.php_env(w)))
    views = ab(farm)
    for p in loops:
        p.wait(timeout=900)
    results["runJobs.php loop per wiki (6 at once)"] = (views, time.time() - t0)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "overload.md"))
    args = ap.parse_args()
    workdir = new_workdir("jdover-")
    farm = Farm(os.path.join(workdir, "farm"))
    try:
        farm.start()
        for w in WIKIS:
            farm.add_wiki(w)
        phases, rates, lim = part1(farm, workdir)
        views = part2(farm, workdir)
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = ["# Overload: jobdrainer vs runJobs.php loops", "",
             "Command: `/usr/bin/python3 tests/bench/bench_overload.py` (one run, this "
             "machine: 2 cores, shared).", "",
             "## MediaWiki made slow", "",
             "One sidecar (2 workers, maxjobs 50, maxtime 5 s, 10 batches/s) on %d wikis; "
             "%d s per phase." % (len(WIKIS), PHASE), "",
             "| phase | RunJobs requests/s | concurrency limit (min, last) |", "|---|---|---|"]
    for (name, r), (lo, last) in zip(rates, lim):
        lines.append("| %s | %.2f | %s, %s |" % (name, r, lo, last))
    base = views["no job runner"][0]
    lines += ["", "## Page views while jobs run", "",
              "`ab -c 2 -t 20` on a wiki's Main Page, same Apache; backlog: 6 wikis x 150 "
              "jobs of 40 ms CPU each.", "",
              "| job runner | page views | p50 ms | p95 ms | p99 ms | mean ms | added p95 | "
              "time to drain |", "|---|---|---|---|---|---|---|---|"]
    for name, (v, took) in views.items():
        lines.append("| %s | %d | %s | %s | %s | %.0f | %s | %s |" % (
            name, v[0], v[1], v[2], v[3], v[4],
            "-" if took is None else "%+d ms" % (v[2] - base[2]),
            "-" if took is None else "%.0f s" % took))
    report = "\n".join(lines) + "\n"
    write_report(args.out, report)


if __name__ == "__main__":
    main()
