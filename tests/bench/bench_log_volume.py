#!/usr/bin/python3
"""Pod log volume at the shipped log_level (info), for several binaries side by side on
the same farm and workload (issue 22: "pod logs a person can read").

A busy pod: one sidecar at the shipped defaults (two workers, batches_per_second 10)
for --window seconds per binary, on ten wikis: three with a standing backlog (a bot:
thousands of cheap jobs, topped up), seven with a job or two every few seconds (their
users). Counts the lines the pod
wrote, by msg, and scales them to lines per hour; also the RunJobs requests Apache saw,
so that the drains are comparable.

    nice -n 10 /usr/bin/python3 tests/bench/bench_log_volume.py \\
        --binary before=OLD --binary after=NEW [--window 120] \\
        [--out tests/bench/results/log_volume.md]
"""

import argparse
import collections
import datetime
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_common import (BenchFarm, Binary, Pod, Pods, access_entries_since, clear_jobs,  # noqa: E402
                          is_runjobs, log, new_workdir, reset_coordination, sidecar_ini,
                          write_report)

WIKIS = 10
BUSY = 3            # wikis with a standing backlog
BACKLOG = 3000      # cheap jobs each keeps ready at least (topped up every round)
TRICKLE = 2         # jobs per round on each of the other wikis
ROUND = 3.0         # seconds between rounds


def measure(farm, binary, window):
    domains = sorted(farm.wikis)
    reset_coordination(farm)
    clear_jobs(farm, domains)
    workdir = new_workdir("jdlogs-")
    ini, dropped = sidecar_ini(binary, farm, {"sidecar": {"log_level": "info"}})
    t0 = time.time()
    with Pods() as pods:
        pod = pods.add(Pod(workdir, "busy", ini).start())
        end = time.monotonic() + window
        while time.monotonic() < end:
            for d in domains[:BUSY]:
                if farm.ready_jobs(d) < BACKLOG:
                    farm.insert_probe_jobs(d, BACKLOG, tag="logs")
            for d in domains[BUSY:]:
                farm.insert_probe_jobs(d, TRICKLE, tag="logs")
            time.sleep(ROUND)
        t1 = time.time()
        lines = pod.lines()
        pod.stop()
    requests = sum(1 for e in access_entries_since(farm, t0)
                   if is_runjobs(e) and e["start"] <= t1)
    by_msg = collections.Counter(l.get("msg", "?") for l in lines)
    shutil.rmtree(workdir, ignore_errors=True)
    clear_jobs(farm, domains)
    span = t1 - t0
    return {"lines": len(lines), "seconds": round(span, 1), "requests": requests,
            "lines_per_hour": round(len(lines) * 3600 / span),
            "requests_per_hour": round(requests * 3600 / span),
            "by_msg": dict(by_msg.most_common()), "dropped_keys": dropped}


def report(res):
    out = ["# Pod log volume at log_level = info", "",
           "Run %s; `tests/bench/bench_log_volume.py`: one pod at the shipped defaults, "
           "%d wikis: %d with a standing backlog of %d cheap jobs (topped up), the others "
           "%d jobs every %.0f s. The same farm and workload for each binary, one after "
           "the other." % (res["date"], WIKIS, BUSY, BACKLOG, TRICKLE, ROUND), "",
           "| binary | window s | RunJobs requests/h | log lines/h | lines per request |",
           "|---|---|---|---|---|"]
    for r in res["runs"]:
        out.append("| %s | %s | %d | %d | %.2f |" % (
            r["label"], r["seconds"], r["requests_per_hour"], r["lines_per_hour"],
            r["lines"] / max(1, r["requests"])))
    out += ["", "Lines by `msg`:", ""]
    for r in res["runs"]:
        out.append("- %s: %s" % (r["label"], ", ".join("%s %d" % kv
                                                       for kv in r["by_msg"].items())))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "log_volume.md"))
    args = ap.parse_args()
    binaries = [(b.split("=", 1)[0], b.split("=", 1)[1]) for b in args.binary]
    workdir = new_workdir("jdlogfarm-")
    farm = BenchFarm(os.path.join(workdir, "farm"))
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "window": args.window, "runs": []}
    try:
        farm.start(wikis=WIKIS)
        for label, path in binaries:
            r = measure(farm, Binary(path), args.window)
            r["label"] = label
            res["runs"].append(r)
            log("%s: %d lines in %.0f s (%d/h), %d RunJobs requests", label, r["lines"],
                r["seconds"], r["lines_per_hour"], r["requests"])
            with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
                json.dump(res, f, indent=1)
            write_report(args.out, report(res))
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
