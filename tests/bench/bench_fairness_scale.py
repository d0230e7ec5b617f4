#!/usr/bin/python3
"""Fairness at scale (the lease issue's benchmark): one wiki with a big backlog, many
small wikis receiving a few jobs every second, several sidecars with default settings.

Reports the queue-to-run latency of the small wikis' jobs (probe jobs that record when
they were queued and when they ran: p50, p99, max), the big wiki's jobs/s while it
drains, and the lease statements per second the coordination database served (from
the sidecars' own /metrics counters).

    /usr/bin/python3 tests/bench/bench_fairness_scale.py [--big 100000] [--small 200]
        [--sidecars 3] [--seconds 120] [--out tests/bench/results/fairness_scale.md]
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
from bench_common import new_workdir, write_report  # noqa: E402
from sidecar import Sidecar, farm_ini  # noqa: E402


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def lease_ops(pods):
    total = 0.0
    for p in pods:
        m = p.metrics()
        total += sum(v for k, v in m.items() if k.startswith("jobdrainer_lease_operations_total"))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", type=int, default=100000)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--sidecars", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fairness_scale.md"))
    args = ap.parse_args()

    workdir = new_workdir("jdfairscale-")
    farm = Farm(os.path.join(workdir, "farm"))
    pods = []
    rng = random.Random(42)
    try:
        t_setup = time.time()
        farm.start()
        big = "big.farm.test"
        small = ["s%03d.farm.test" % i for i in range(args.small)]
        farm.add_wiki(big)
        for s in small:
            farm.add_wiki(s)
        farm.push_null_jobs(big, args.big)
        setup = time.time() - t_setup
        # Default settings, as shipped; only the endpoints' port differs per "pod".
        for i in range(args.sidecars):
            pods.append(Sidecar(workdir, "pod%d" % i, farm_ini(
                farm, sidecar={"workers": 2, "log_format": "json"},
                mediawiki={"maxjobs": 100, "maxtime": 15},
                discovery={"interval": 60}, scan={"interval": 5},
                drain={"time_slice": 60, "backoff_base": 5, "backoff_max": 600},
                coordination={"poll_interval_ms": 1000})).start())
        feeder_db = Farm.load(farm.dir)
        stop = threading.Event()
        pushed = [0]

        def feed():
            while not stop.is_set():
                for s in rng.sample(small, 10):
                    n = rng.randint(1, 3)
                    feeder_db.insert_probe_jobs(s, n, tag="scale")
                    pushed[0] += n
                stop.wait(rng.uniform(0.5, 1.5))

        time.sleep(10)   # let the first scans and leases settle
        ops0, big0, t0 = lease_ops(pods), farm.ready_jobs(big), time.time()
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(args.seconds)
        stop.set()
        feeder.join()
        ops1, big1, t1 = lease_ops(pods), farm.ready_jobs(big), time.time()
        deadline = time.time() + 120
        while time.time() < deadline and sum(farm.ready_jobs(s) for s in small) > 0:
            time.sleep(1)
        runs = [r for r in farm.probe_runs() if r["tag"] == "scale"]
        lat = [r["ran"] - r["pushed"] for r in runs]
        errors = sum(1 for p in pods for l in p.lines() if l.get("severity") == "ERROR")
        rss = []
        for p in pods:
            with open("/proc/%d/status" % p.pid) as f:
                rss += [int(l.split()[1]) for l in f if l.startswith("VmHWM")]
    finally:
        for p in pods:
            p.stop()
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        "# Fairness at scale: one big backlog, %d small wikis, %d sidecars" % (
            args.small, args.sidecars), "",
        "Command: `/usr/bin/python3 tests/bench/bench_fairness_scale.py --big %d --small %d "
        "--sidecars %d --seconds %d` (this machine: 2 cores, shared by MariaDB, Apache and "
        "the sidecars; setup took %.0f s)." % (args.big, args.small, args.sidecars,
                                                args.seconds, setup), "",
        "Default settings: 2 workers per sidecar, maxjobs 100, scan every 5 s, idle poll "
        "every 1 s, time slice 60 s, one worker per wiki. The feeder queued %d probe jobs "
        "on random small wikis (10 wikis x 1-3 jobs every 0.5-1.5 s) for %d s." % (
            pushed[0], args.seconds), "",
        "| measure | value | target |", "|---|---|---|",
        "| small-wiki jobs run | %d of %d | all |" % (len(lat), pushed[0]),
        "| latency p50 | %.1f s | |" % statistics.median(lat),
        "| latency p99 | %.1f s | < 10 s |" % pct(lat, 99),
        "| latency max | %.1f s | < 30 s |" % max(lat),
        "| big wiki jobs/s while the small ones are fed | %.0f | keeps draining |" % (
            (big0 - big1) / (t1 - t0)),
        "| lease statements/s (all sidecars) | %.1f | |" % ((ops1 - ops0) / (t1 - t0)),
        "| sidecar peak RSS (VmHWM) | %.1f MiB max | |" % (max(rss) / 1024.0),
        "| ERROR log lines | %d | 0 |" % errors,
        "",
    ]
    report = "\n".join(lines)
    write_report(args.out, report)


if __name__ == "__main__":
    main()
