#!/usr/bin/python3
"""Commit-to-wake latency of the binary log feed ([binlog], issue 13 item 3).

A farm whose MariaDB writes a binary log, one sidecar with the feed on and a 60 s
[scan] interval (so a scan never finds these jobs first), and `--jobs` probe jobs, each
inserted on a random cold wiki (one at a time, each run before the next is queued). Per
job it reports, from the client's clock right after the INSERT's commit returned:
- wake: until the scanner finished rescanning that wiki and wrote its backlog for the
  fleet (the sidecar's `woken wikis scanned` line, debug level), i.e. detection;
- run: until the job ran (the probe job's own record of when it ran), which adds the
  worker's lease, the RunJobs request and MediaWiki's start-up.
ROW format inserts are seen through table-map + write-rows events; MIXED inserts of
the benchmark (qualified `db`.`table`, from another default database) through the
statement text of QUERY events.

    /usr/bin/python3 tests/bench/bench_binlog_latency.py [--jobs 50] [--wikis 10]
        [--formats ROW,MIXED] [--out tests/bench/results/binlog_latency.md]
"""

import argparse
import datetime
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from bench_common import log, new_workdir, write_report  # noqa: E402
from farm import Farm  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402

FEED_USER, FEED_PASSWORD = "jdbinlog", "blpass"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def log_time(line):
    """A log line's ts as unix seconds."""
    return datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def measure(farm, pod, fmt, jobs, rng):
    farm.sql("SET GLOBAL binlog_format = '%s'" % fmt)
    domains = sorted(farm.wikis)
    wakes, runs = [], []
    for i in range(jobs):
        domain = rng.choice(domains)
        tag = "%s-%d" % (fmt, i)
        seen = len(pod.lines())
        farm.insert_probe_jobs(domain, 1, tag=tag)
        committed = time.time()
        run = wait_until(lambda: [r for r in farm.probe_runs() if r.get("tag") == tag],
                         timeout=120, interval=0.05, what="probe " + tag)[0]
        woken = [l for l in pod.lines()[seen:]
                 if l.get("msg") == "woken wikis scanned" and l.get("first") == domain]
        if woken:
            wakes.append(log_time(woken[0]) - committed)
        runs.append(float(run["ran"]) - committed)
        time.sleep(rng.uniform(0.2, 0.5))
    return wakes, runs


def row(fmt, name, values, jobs):
    if not values:
        return "| %s | %s | 0 of %d | - | - | - |" % (fmt, name, jobs)
    ms = [v * 1000 for v in values]
    return "| %s | %s | %d of %d | %.1f | %.1f | %.1f |" % (
        fmt, name, len(ms), jobs, pct(ms, 50), pct(ms, 99), max(ms))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--wikis", type=int, default=10)
    ap.add_argument("--formats", default="ROW,MIXED")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "bench", "results",
                                                  "binlog_latency.md"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = new_workdir("jdbinlogbench-")
    farm = Farm(os.path.join(work, "farm"), binlog_format="ROW")
    lines = []
    try:
        log("starting a farm of %d wikis with log_bin", a.wikis)
        farm.start(wikis=a.wikis)
        for host in ("127.0.0.1", "localhost"):
            farm.sql("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'"
                     % (FEED_USER, host, FEED_PASSWORD))
            farm.sql("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '%s'@'%s'"
                     % (FEED_USER, host))
        ini = farm_ini(farm, sidecar={"log_level": "debug"},
                       scan={"interval": 60, "full_interval": 60},
                       binlog={"enabled": "true", "user": FEED_USER,
                               "password": FEED_PASSWORD})
        pod = Sidecar(work, "pod-a", ini).start()
        pod.wait_for(lambda l: l.get("msg") == "binary log feed following", timeout=30)
        pod.wait_for(lambda l: l.get("msg") == "scan", timeout=30)
        for fmt in a.formats.split(","):
            log("%s: %d jobs", fmt, a.jobs)
            wakes, runs = measure(farm, pod, fmt, a.jobs, rng)
            lines.append(row(fmt, "commit → wake (wiki rescanned, backlog written)", wakes,
                             a.jobs))
            lines.append(row(fmt, "commit → job ran", runs, a.jobs))
        pod.stop()
    finally:
        farm.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join([
        "# Binary log feed: commit-to-wake latency",
        "",
        "`%s`" % " ".join(["/usr/bin/python3", "tests/bench/bench_binlog_latency.py"]
                          + sys.argv[1:]),
        "",
        "%d wikis, one sidecar with `[binlog] enabled = true` and `[scan] interval = 60`, "
        "one probe job at a time on a random cold wiki (inserted by SQL; measured from the "
        "client right after its commit returned). 2-core machine shared by MariaDB, Apache "
        "and the sidecar. Milliseconds." % a.wikis,
        "",
        "| binlog_format | from commit to | jobs | p50 | p99 | max |",
        "|---|---|---|---|---|---|",
    ] + lines + [""])
    write_report(a.out, text)


if __name__ == "__main__":
    main()
