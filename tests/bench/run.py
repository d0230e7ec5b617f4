#!/usr/bin/python3
"""jobdrainer benchmark: sets up a local farm (MariaDB + Apache/mod_php + Debian MediaWiki
1.39 on loopback), runs each workload against jobdrainer and the baselines in the same run,
and writes REPORT.md, PNG plots and results.json.

    /usr/bin/python3 tests/bench/run.py [--size quick|full] [--out tests/bench/results]
        [--only throughput,fairness,idle,scan] [--pod-startup S] [--binary PATH] [--keep]

Workloads: throughput (jobdrainer vs runJobs.php), fairness (small-wiki latency while a
big wiki drains; jobdrainer, the shipped poll-and-pod approach, a serial runJobs.php loop,
in-request $wgJobRunRate), idle (cost with no jobs), scan (50 / 500 / 5,000 wikis).
quick: about 8 minutes on 2 cores; full: the issue's sizes (about 75 minutes). Not a
test: it asserts nothing about speed; it fails only when a workload cannot run.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import matplotlib  # noqa: F401
except ImportError:
    sys.exit("run.py needs matplotlib for its plots: apt-get install python3-matplotlib, and "
             "run it with Debian's /usr/bin/python3")

import bench_common  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
from bench_common import REPO, BenchFarm, Binary, create_scan_user, log, new_workdir  # noqa: E402

WORKLOADS = ["throughput", "fairness", "idle", "scan"]
FULL_ESTIMATE = "about 75 minutes (estimated from the quick run's rates, not measured " \
                "here): fairness about 60 of them, of which the real 15-minute poller takes " \
                "15 minutes of probes plus up to 17 more waiting for its last polls"


def build(binary):
    if binary:
        return Binary(binary)
    r = subprocess.run(["make", "-s", "all"], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make failed (use --binary PATH to benchmark a built binary):\n%s%s"
                 % (r.stdout[-3000:], r.stderr[-3000:]))
    return Binary(os.path.join(REPO, "build", "jobdrainer"))


def source_desc():
    def git(*a):
        return subprocess.run(["git"] + list(a), cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "sidecar", "Makefile")
    return "built from commit %s%s" % (head, " with uncommitted changes in sidecar/" if dirty
                                       else "")


def versions(farm):
    php = subprocess.run(["php", "-r", "echo PHP_VERSION;"], capture_output=True,
                         text=True).stdout.strip()
    return {"mariadb": farm.sql("SELECT VERSION()")[0][0], "php": php,
            "kernel": "Linux %s" % platform.release()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(workloads.SIZES), default="quick")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated subset of: " + ", ".join(WORKLOADS))
    ap.add_argument("--pod-startup", type=float, default=0.0,
                    help="seconds each shipped-approach pod waits before its loop (default 0, "
                         "the baseline's best case)")
    ap.add_argument("--binary", help="benchmark this jobdrainer binary instead of `make`")
    ap.add_argument("--keep", action="store_true", help="keep the farm directory")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="no run: write the report and plots from a results.json into --out")
    a = ap.parse_args(argv)
    if a.report_only:
        with open(a.report_only) as f:
            res = json.load(f)
        report.write_report(res, os.path.abspath(a.out))
        return 0
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    bad = [w for w in only if w not in WORKLOADS]
    if bad:
        ap.error("unknown workload(s): %s" % ", ".join(bad))
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)

    # SIGTERM unwinds like Ctrl-C: every farm, sidecar and baseline process is stopped
    # by the finally blocks on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = build(a.binary)
    size = dict(workloads.SIZES[a.size])
    t_run = time.monotonic()
    meta = {
        "command": " ".join(["/usr/bin/python3 tests/bench/run.py"] +
                            [shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "size": a.size, "binary_version": binary.version,
        "source": "given with --binary %s" % a.binary if a.binary else source_desc(),
        "cpus": os.cpu_count(), "loadavg_start": workloads.load_avg(),
        "sizes": workloads.SIZES, "full_estimate": FULL_ESTIMATE,
        "shipped_limit": size["shipped_limit"], "durations": {}, "errors": {},
    }
    res = {"meta": meta}
    workdir = new_workdir()
    farm = BenchFarm(os.path.join(workdir, "farm"))
    ctx = None
    try:
        log("farm: starting in %s", farm.dir)
        farm.start()
        create_scan_user(farm)
        meta.update(versions(farm))
        ctx = workloads.Ctx(farm, binary, workdir, a.size, size, pod_startup=a.pod_startup)
        t = time.monotonic()
        workloads.setup_wikis(ctx)
        meta["durations"]["farm set-up"] = time.monotonic() - t
        for name in WORKLOADS:
            if name not in only:
                continue
            t = time.monotonic()
            try:
                res[name] = getattr(workloads, name)(ctx)
            except Exception:  # noqa: BLE001 - report the others, then fail
                meta["errors"][name] = traceback.format_exc()
                log("%s FAILED:\n%s", name, meta["errors"][name])
            meta["durations"][name] = time.monotonic() - t
            bench_common.save_json(os.path.join(out, "results.json"), res)
    finally:
        if ctx is not None:
            ctx.db.close()
            meta["dropped_keys"] = sorted(ctx.dropped_keys)
            meta["configs"] = ctx.configs
            meta["anomalies"] = ctx.anomalies
        try:
            farm.stop()
        except Exception as e:  # noqa: BLE001
            log("farm stop: %s", e)
        if a.keep:
            log("farm directory kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta.setdefault("dropped_keys", [])
    meta["duration_s"] = time.monotonic() - t_run
    meta["loadavg_end"] = workloads.load_avg()
    bench_common.save_json(os.path.join(out, "results.json"), res)
    report.write_report(res, out)
    log("report: %s (%.0f s)", os.path.join(out, "REPORT.md"), meta["duration_s"])
    return 1 if meta["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
