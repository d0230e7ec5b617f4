#!/usr/bin/python3
"""Job-type priorities (issue 11): latency of a priority-type job on a wiki with a
20,000-job backlog of another type, with and without [drain] priority_types, and what
typed batches cost in throughput (a benchmark, not a test).

One wiki, one sidecar with the shipped defaults (scan interval 5 s, maxjobs 100), a
backlog of 20,000 NullJobs, either of one type (`null`, the issue's case) or spread over
ten types (`farmBulk0`..`farmBulk9`, NullJob classes registered by the benchmark: a
wiki with many kinds of work queued). Each run:
- phase A: while the backlog drains, one farmProbe job is queued every 0.5 s for 15 s
  (the issue's case: a single priority job behind another type's backlog);
- phase B: then 2,000 farmProbe jobs at once (a backlog of the priority type itself);
- the run ends when the wiki is empty.
Latency = the probe's run time - its queue time (both from the farm's clock, written by
the probe job itself). Throughput = every job of the run / (first batch start .. last
batch end), from the sidecar's batch lines. Runs, alternating, `--rounds` times each:
  untyped   no lists (MediaWiki picks a random type for every job it pops);
  priority  priority_types = farmProbe;
  typed     skip_types = farmNoSuchJob: every batch asks for one type (the cost of typed
            batches alone, for the throughput figure).

    /usr/bin/python3 tests/bench/bench_priority.py [--backlog 20000] [--rounds 2]
        [--binary build/jobdrainer] [--out tests/bench/results/priority.md]
"""

import argparse
import datetime
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_common import (REPO, Binary, Pod, log, new_workdir, percentile, median,  # noqa: E402
                          reset_coordination, sidecar_ini, write_report)
from farm import Farm  # noqa: E402
from sidecar import wait_until  # noqa: E402

WIKI = "prio.farm.test"
BULK_TYPES = ["farmBulk%d" % i for i in range(10)]
SHAPES = ("one type", "ten types")
CONDITIONS = {
    "untyped": {},
    "priority": {"drain": {"priority_types": "farmProbe"}},
    "typed": {"drain": {"skip_types": "farmNoSuchJob"}},
}


def ts_epoch(ts):
    """A log line's ts (ISO 8601 UTC with ms) as epoch seconds."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def one_run(binary, farm, workdir, name, overrides, backlog, shape, seq):
    farm.sql("TRUNCATE TABLE %s" % farm.wiki(WIKI).job_table)
    reset_coordination(farm)
    farm.sql("DROP TABLE IF EXISTS `jobdrainer`.`jd_pause`")
    types = ["null"] if shape == "one type" else BULK_TYPES
    for t in types:
        farm.insert_raw_jobs(WIKI, backlog // len(types), cmd=t)
    ini, dropped = sidecar_ini(binary, farm, overrides)
    if dropped:
        sys.exit("this binary does not know %s" % ", ".join(dropped))
    tag_a, tag_b = "a%d" % seq, "b%d" % seq
    pod = Pod(workdir, "%s%d" % (name, seq), ini).start()
    try:
        pod.sc.wait_for(lambda l: l.get("msg") == "batch", timeout=120, what="first batch")
        for _ in range(30):
            farm.insert_probe_jobs(WIKI, 1, tag=tag_a)
            time.sleep(0.5)
        farm.insert_probe_jobs(WIKI, 2000, tag=tag_b)
        wait_until(lambda: farm.total_jobs(WIKI) == 0, timeout=900, interval=0.5,
                   what="the wiki drained")
        time.sleep(1)
        runs = farm.probe_runs()
        lat = {t: [p["ran"] - p["pushed"] for p in runs if p.get("tag") == t]
               for t in (tag_a, tag_b)}
        batches = [b for b in pod.batches() if b.get("wiki") == WIKI]
        starts = [ts_epoch(b["ts"]) - b["ms"] / 1000.0 for b in batches]
        ends = [ts_epoch(b["ts"]) for b in batches]
        jobs = sum(b["jobs_ok"] + b["jobs_failed"] for b in batches)
        span = max(ends) - min(starts)
        typed = sum(1 for b in batches if b.get("type"))
        r = dict(cond=name, shape=shape, a=lat[tag_a], b=lat[tag_b], jobs=jobs, span=span,
                 rate=jobs / span, batches=len(batches), typed=typed)
        log("%s, %s: A p50 %.2fs max %.2fs; B p50 %.2fs max %.2fs; %d jobs in %.1fs = %.0f/s "
            "(%d batches, %d typed)", shape, name, percentile(r["a"], 50), max(r["a"]),
            percentile(r["b"], 50), max(r["b"]), jobs, span, r["rate"], len(batches), typed)
        return r
    finally:
        pod.stop()


def fmt(v):
    return "-" if v is None else "%.2f s" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "jobdrainer"))
    ap.add_argument("--backlog", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "priority.md"))
    args = ap.parse_args()
    binary = Binary(args.binary)
    workdir = new_workdir("jdprio-")
    farm = Farm(os.path.join(workdir, "farm"))
    farm.start()
    rows = []
    try:
        farm.add_wiki(WIKI)
        farm.set_settings_override("".join("$wgJobClasses['%s'] = NullJob::class;\n" % t
                                           for t in BULK_TYPES))
        time.sleep(3)  # Apache's opcache revalidates every 2 s
        seq = 0
        for _ in range(args.rounds):
            for shape in SHAPES:
                for name, overrides in CONDITIONS.items():
                    seq += 1
                    rows.append(one_run(binary, farm, workdir, name, overrides,
                                        args.backlog, shape, seq))
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    text = ["# Job-type priorities: latency and the cost of typed batches", "",
            "`/usr/bin/python3 tests/bench/bench_priority.py --backlog %d --rounds %d` "
            "(binary %s), on a 2-core machine shared with other test farms. One wiki, one "
            "sidecar with the shipped defaults (scan interval 5 s, maxjobs 100, "
            "batches_per_second 10), a backlog of %d `NullJob`s (no sleep), of one type or of ten. Phase A: one "
            "`farmProbe` job queued every 0.5 s for 15 s while the backlog drains (30 "
            "samples per run); phase B: then 2,000 `farmProbe` jobs at once. Latency = "
            "the probe's run time - its queue time. Throughput = all jobs of the run "
            "(backlog + 2,030 probes) / first batch start .. last batch end, from the "
            "sidecar's batch lines. Conditions alternate, %d rounds each; percentiles over "
            "every sample of a condition (nearest rank)."
            % (args.backlog, args.rounds, binary.version, args.backlog, args.rounds), "",
            "| backlog | condition | A: single priority job p50 / p99 / max | B: 2,000 at once "
            "p50 / p99 / max | throughput jobs/s (per round) | batches (typed) |",
            "|---|---|---|---|---|---|"]
    for shape, name in [(sh, n) for sh in SHAPES for n in CONDITIONS]:
        rs = [r for r in rows if r["cond"] == name and r["shape"] == shape]
        a = [x for r in rs for x in r["a"]]
        b = [x for r in rs for x in r["b"]]
        text.append("| %s | %s | %s / %s / %s | %s / %s / %s | %.0f (%s) | %s |" % (
            shape, {"untyped": "no list (untyped batches)",
             "priority": "`priority_types = farmProbe`",
             "typed": "`skip_types = farmNoSuchJob` (every batch typed)"}[name],
            fmt(percentile(a, 50)), fmt(percentile(a, 99)), fmt(max(a) if a else None),
            fmt(percentile(b, 50)), fmt(percentile(b, 99)), fmt(max(b) if b else None),
            median([r["rate"] for r in rs]), ", ".join("%.0f" % r["rate"] for r in rs),
            ", ".join("%d (%d)" % (r["batches"], r["typed"]) for r in rs)))
    text += [""]
    write_report(args.out, "\n".join(text))


if __name__ == "__main__":
    main()
