#!/usr/bin/python3
"""Throughput: jobdrainer (one worker) vs maintenance/runJobs.php on the same farm.

Drains N NullJobs on one wiki, alternately with each runner, several rounds, in the same
run on the same real farm (MariaDB + Apache/mod_php + Debian MediaWiki). Reports jobs/s
for each, the ratio, and jobdrainer's peak RSS (VmHWM). A benchmark, not a test: it
asserts nothing about speed.

    /usr/bin/python3 tests/bench/bench_throughput.py [--jobs 5000] [--rounds 3]
        [--maxjobs 100,1000] [--out tests/bench/results/throughput.md]
"""

import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
from bench_common import new_workdir, write_report  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402

WIKI = "bench1.farm.test"
STARTUP = []   # seconds from starting a sidecar to its first RunJobs request


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_jobdrainer(farm, workdir, n, maxjobs, rnd):
    farm.push_null_jobs(WIKI, n)
    ini = farm_ini(farm, sidecar={"workers": 1, "log_format": "json"},
                   mediawiki={"maxjobs": maxjobs, "maxtime": 25},
                   coordination={"lease_ttl": 90}, scan={"interval": 1},
                   drain={"batches_per_second": 0})
    name = "bench-%d-%d" % (maxjobs, rnd)
    pod = Sidecar(workdir, name, ini)
    t0 = time.time()
    pod.start()
    wait_until(lambda: farm.total_jobs(WIKI) == 0, timeout=600, interval=0.02,
               what="jobdrainer drained")
    t_end = time.time()
    # Timed from the first RunJobs request Apache saw (like runJobs.php, which is timed
    # from its own start): the sidecar's start-up (discovery, schema, first scan) is
    # reported separately.
    first = min(e["start"] for e in farm.access_log_entries()
                if "jobdrainer_holder=%s" % name in e["request"])
    took = t_end - first
    STARTUP.append(first - t0)
    rss = vm_hwm_kib(pod.pid)
    pod.stop()
    ok = sum(b.get("jobs_ok", 0) for b in pod.batches())
    if ok != n:
        raise SystemExit("jobdrainer ran %d jobs, expected %d" % (ok, n))
    return n / took, rss


def run_runjobs_php(farm, n):
    farm.push_null_jobs(WIKI, n)
    t0 = time.monotonic()
    farm.run_jobs_php(WIKI)
    took = time.monotonic() - t0
    if farm.total_jobs(WIKI) != 0:
        raise SystemExit("runJobs.php left jobs behind")
    return n / took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--maxjobs", default="100,1000")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "throughput.md"))
    args = ap.parse_args()
    sizes = [int(x) for x in args.maxjobs.split(",")]

    workdir = new_workdir("jdbench-")
    farm = Farm(os.path.join(workdir, "farm"))
    try:
        farm.start()
        farm.add_wiki(WIKI)
        # Warm up both paths once (PHP opcache, l10n cache, MariaDB buffer pool).
        run_runjobs_php(farm, 200)
        run_jobdrainer(farm, workdir, 200, sizes[0], 0)
        php, jd, rss = [], {m: [] for m in sizes}, []
        for rnd in range(1, args.rounds + 1):
            php.append(run_runjobs_php(farm, args.jobs))
            for m in sizes:
                rate, peak = run_jobdrainer(farm, workdir, args.jobs, m, rnd)
                jd[m].append(rate)
                rss.append(peak)
            print("round %d: runJobs.php %.0f jobs/s; %s" % (
                rnd, php[-1], ", ".join("jobdrainer maxjobs=%d %.0f jobs/s" % (m, jd[m][-1])
                                        for m in sizes)), flush=True)
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    php_med = statistics.median(php)
    lines = [
        "# Throughput: jobdrainer vs runJobs.php",
        "",
        "%d NullJobs on one wiki, %d rounds alternating runners, same farm, same run "
        "(`%s`). Median jobs/s; ratio = jobdrainer / runJobs.php." % (
            args.jobs, args.rounds, "make bench"),
        "",
        "| runner | jobs/s (median) | all rounds | ratio |",
        "|---|---|---|---|",
        "| runJobs.php | %.0f | %s | 1.00 |" % (php_med, ", ".join("%.0f" % x for x in php)),
    ]
    for m in sizes:
        med = statistics.median(jd[m])
        lines.append("| jobdrainer, 1 worker, maxjobs=%d | %.0f | %s | %.2f |" % (
            m, med, ", ".join("%.0f" % x for x in jd[m]), med / php_med))
    lines += ["", "jobdrainer is timed from its first RunJobs request to an empty queue; "
              "from process start to that first request took %.2f s (median; discovery, "
              "schema check, first scan)." % statistics.median(STARTUP),
              "Rate limit off (`batches_per_second = 0`); the default, 10 batches/s, would "
              "cap maxjobs=100 at 1,000 jobs/s.", "",
              "jobdrainer peak RSS (VmHWM): max %.1f MiB over %d runs." % (
                  max(rss) / 1024.0, len(rss)), ""]
    report = "\n".join(lines)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
