#!/usr/bin/python3
"""Detection cost and latency at farm scale (issue 13 items 1-2): database time per
minute the backlog scan spends, and how long a job queued on a cold wiki waits until
the scanner has written it to jd_wiki, for two binaries (before and after) at MariaDB's
default settings.

The wikis are the scan benchmark's (workloads.ScanWikis: a job table and platform rows
each, every 10th wiki with 20 ready jobs, the first with --big ready jobs), scanned by
one sidecar with the shipped [scan] settings under a database user of its own, so
MariaDB's per-user statistics (userstat) give the scan's server time apart from
everything else. MediaWiki is a closed port: nothing is drained, only detection is
measured. Probe jobs are inserted at random times into wikis that have no jobs (cold),
and jd_wiki is polled every 100 ms for them.

    nice -n 19 /usr/bin/python3 tests/bench/bench_scan_budget.py --before OLD --after NEW
        [--counts 500,5000] [--window 120] [--probes 12]
        [--out tests/bench/results/scan_budget.md] [--after-binlog]
        [--after-set SECTION.KEY=VALUE ...]

With --after-binlog, MariaDB runs with log_bin (ROW) and the after run follows the
binary log too: pass the same binary twice to compare detection without and with the
feed.
"""

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_common  # noqa: E402
from bench_common import (SCAN_PASSWORD, SCAN_USER, BenchFarm, Binary, DbStats, Pod,  # noqa: E402
                          Pods, create_scan_user, farm_mod, free_port, log, new_workdir,
                          percentile, reset_coordination, sidecar_ini, user_statements,
                          write_report)
from workloads import SCAN_VERSION, ScanWikis  # noqa: E402

PROBE_CMD = "jdScanProbe"


def sweep_done(pod):
    """True once the sidecar has read every wiki once (its "scan" log line: one scan
    before, one complete sweep after)."""
    return any(l.get("msg") == "scan" for l in pod.lines())


def push_probe(farm, table, server=None):
    farm.sql("INSERT INTO %s (job_cmd, job_namespace, job_title, job_timestamp, job_params,"
             " job_random, job_sha1) VALUES (%%s, 0, 'Probe',"
             " DATE_FORMAT(UTC_TIMESTAMP(), '%%%%Y%%%%m%%%%d%%%%H%%%%i%%%%s'), 'a:0:{}', 1, '')"
             % table, (PROBE_CMD,), server=server)
    return time.time()


def detected(farm, domains):
    """The probed domains whose jd_wiki row shows a ready job."""
    if not domains:
        return set()
    rows = farm.sql("SELECT domain FROM `%s`.jd_wiki WHERE oldest_ready_at IS NOT NULL AND"
                    " domain IN (%s)" % (farm_mod.COORD_DB, ",".join(["%s"] * len(domains))),
                    list(domains))
    return {r[0] for r in rows}


FEED_USER, FEED_PASSWORD = "jdbinlog", "blpass"


def create_feed_user(farm, server=None):
    """The binary log feed's user ([binlog], README: the grants it needs). server: a
    Farm.add_db_server server's name (None: the main one)."""
    for host in ("127.0.0.1", "localhost"):
        farm.sql("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'"
                 % (FEED_USER, host, FEED_PASSWORD), server=server)
        farm.sql("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '%s'@'%s'"
                 % (FEED_USER, host), server=server)


def measure(farm, db, binary, sw, n, window, probes, seed, feed=False, extra=None):
    reset_coordination(farm)
    for db_name, pre in sw.tables:
        farm.sql("DELETE FROM `%s`.`%s_job` WHERE job_cmd = %%s" % (db_name, pre), (PROBE_CMD,))
    bench_common.sidecar_mod.BINARY = binary.path
    overrides = {
        "sidecar": {"workers": 1, "log_level": "debug"},
        "mediawiki": {"port": free_port()},
        "discovery": {"version": SCAN_VERSION, "interval": 3600},
        "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""},
        "binlog": ({"enabled": "true", "user": FEED_USER, "password": FEED_PASSWORD}
                   if feed else {})}
    for section, keys in (extra or {}).items():
        overrides.setdefault(section, {}).update(keys)
    text, dropped = sidecar_ini(binary, farm, overrides)
    rng = random.Random(seed)
    # Cold: no jobs of their own (ScanWikis gives every 10th wiki 20, the first --big).
    cold = [i for i in range(n) if i != 0 and i % 10 != 1]
    chosen = rng.sample(cold, min(probes, len(cold)))
    offsets = sorted(rng.uniform(0, window * 0.8) for _ in chosen)
    pushed, seen = {}, {}
    pod_dir = os.path.join(os.path.dirname(farm.dir), "pods")
    os.makedirs(pod_dir, exist_ok=True)
    with Pods() as pods:
        pod = pods.add(Pod(pod_dir, "budget-%d-%d" % (n, int(time.time())),
                           text)).start()
        t = time.monotonic()
        deadline = t + 300 + n / 10
        while not sweep_done(pod):
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("no complete scan from %s:\n%s" % (pod.name, pod.sc.raw()[-3000:]))
            time.sleep(0.2)
        first_sweep_s = time.monotonic() - t
        db0 = db.snapshot()
        t0 = time.monotonic()
        pending = list(zip(offsets, chosen))
        while time.monotonic() - t0 < window or (len(seen) < len(pushed) and
                                                 time.monotonic() - t0 < window + 240):
            now = time.monotonic() - t0
            while pending and pending[0][0] <= now:
                _, i = pending.pop(0)
                dom = "sb%05d.scan.test" % i
                db_name, pre = sw.tables[i]
                pushed[dom] = push_probe(farm, "`%s`.`%s_job`" % (db_name, pre))
            if time.monotonic() - t0 >= window and "db1" not in locals():
                db1 = db.snapshot()
                metrics = pod.sc.metrics()
            for dom in detected(farm, [d for d in pushed if d not in seen]):
                seen[dom] = time.time() - pushed[dom]
            time.sleep(0.1)
        if "db1" not in locals():
            db1 = db.snapshot()
            metrics = pod.sc.metrics()
        pod.stop()
    d = DbStats.delta(db0, db1)
    scan = user_statements(d["users"], lambda u: u == SCAN_USER)
    minutes = d["seconds"] / 60.0
    lat = sorted(seen.values())
    return {
        "wikis": n, "binary": binary.version, "window_s": d["seconds"],
        "first_sweep_s": first_sweep_s,
        "scan_busy_s_per_min": scan["busy_s"] / minutes,
        "scan_cpu_s_per_min": scan["cpu_s"] / minutes,
        "scan_statements_per_min": scan["statements"] / minutes,
        "scan_rows_read_per_min": scan["rows_read"] / minutes,
        "probes": len(pushed), "detected": len(seen),
        "latency_p50_s": percentile(lat, 50) if lat else None,
        "latency_max_s": lat[-1] if lat else None,
        "latencies_s": lat,
        "gauges": {k: v for k, v in metrics.items()
                   if k.startswith("jobdrainer_scan") or k == "jobdrainer_wikis"},
        "dropped_keys": dropped,
    }


def fmt(v, digits=2):
    return "-" if v is None else ("%.*f" % (digits, v))


def report(res, args):
    lines = ["# Detection within a database budget: cost and cold-wiki latency", "",
             "Generated by `%s` on %s (%d cores, shared with other work; run under `nice -n 19`)."
             % (" ".join(["tests/bench/bench_scan_budget.py"] + sys.argv[1:]),
                res["date"], os.cpu_count()), "",
             "One sidecar, shipped `[scan]` defaults, MariaDB's default settings (%s). "
             "Wikis as the scan benchmark builds them: a job table and platform rows each, "
             "every 10th wiki with 20 ready jobs (hot, never drained: MediaWiki is a closed "
             "port), the first with %d. Database time is the scan user's BUSY_TIME in "
             "INFORMATION_SCHEMA.USER_STATISTICS over a %d s window after the first complete "
             "scan; latency is from a probe job's INSERT on a random cold wiki to its jd_wiki "
             "row showing a ready job (polled every 100 ms)." % (
                 ", ".join("%s=%s" % kv for kv in sorted(res["server_variables"].items())),
                 args.big, args.window), "",
             "| wikis | binary | DB s/min (scan user) | share of a core | CPU s/min | statements/min | first full pass s | cold probes found | latency p50 s | max s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append("| %d | %s | %s | %s%% | %s | %.0f | %.1f | %d/%d | %s | %s |" % (
            r["wikis"], r["label"], fmt(r["scan_busy_s_per_min"], 3),
            fmt(100 * r["scan_busy_s_per_min"] / 60, 2), fmt(r["scan_cpu_s_per_min"], 3),
            r["scan_statements_per_min"], r["first_sweep_s"], r["detected"], r["probes"],
            fmt(r["latency_p50_s"], 1), fmt(r["latency_max_s"], 1)))
    lines += ["", "Ratios, after / before (lower is better):", "",
              "| wikis | DB time per minute | latency p50 | latency max |", "|---|---|---|---|"]
    for n in res["counts"]:
        b = [r for r in res["runs"] if r["wikis"] == n and r["label"] == "before"]
        a = [r for r in res["runs"] if r["wikis"] == n and r["label"] == "after"]
        if not a or not b:
            continue
        a, b = a[0], b[0]

        def ratio(k):
            return fmt(a[k] / b[k], 2) if a[k] and b[k] else "-"
        lines.append("| %d | %s | %s | %s |" % (n, ratio("scan_busy_s_per_min"),
                                                ratio("latency_p50_s"), ratio("latency_max_s")))
    lines += ["", "The after binary's own gauges at the end of each window:", ""]
    for r in res["runs"]:
        if r["label"] == "after":
            lines.append("- %d wikis: %s" % (r["wikis"], ", ".join(
                "%s=%s" % (k.replace("jobdrainer_", ""), fmt(v, 3))
                for k, v in sorted(r["gauges"].items()))))
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--counts", default="500,5000")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--probes", type=int, default=12)
    ap.add_argument("--big", type=int, default=10000)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scan_budget.md"))
    ap.add_argument("--after-binlog", action="store_true",
                    help="MariaDB runs with log_bin (ROW) for both runs, and the after run "
                         "also follows the binary log ([binlog] enabled)")
    ap.add_argument("--after-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="an INI setting for the after run only (repeatable), e.g. "
                         "scan.max_sweep_seconds=0")
    args = ap.parse_args()
    after_extra = {}
    for item in args.after_set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not section or not name or not _:
            ap.error("--after-set %r: SECTION.KEY=VALUE" % item)
        after_extra.setdefault(section, {})[name] = value
    counts = [int(c) for c in args.counts.split(",")]
    binaries = [("before", Binary(args.before)), ("after", Binary(args.after))]
    workdir = new_workdir("jdscanbudget-")
    farm = BenchFarm(os.path.join(workdir, "farm"),
                     binlog_format="ROW" if args.after_binlog else None)
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "counts": counts, "runs": []}
    try:
        farm.start()
        create_scan_user(farm)
        if args.after_binlog:
            create_feed_user(farm)
        db = DbStats(farm)
        res["server_variables"] = dict(db.sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('table_open_cache', "
            "'table_definition_cache', 'innodb_buffer_pool_size')"))
        sw = ScanWikis(farm)
        for n in counts:
            t = time.monotonic()
            sw.grow(n, big_rows=args.big)
            log("%d wikis created in %.0fs", n, time.monotonic() - t)
            for label, b in binaries:
                r = measure(farm, db, b, sw, n, args.window, args.probes, seed=n,
                            feed=args.after_binlog and label == "after",
                            extra=after_extra if label == "after" else None)
                r["label"] = label
                res["runs"].append(r)
                log("%d wikis, %s: %.3f DB s/min, %d/%d found, p50 %s max %s", n, label,
                    r["scan_busy_s_per_min"], r["detected"], r["probes"],
                    fmt(r["latency_p50_s"], 1), fmt(r["latency_max_s"], 1))
                with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
                    json.dump(res, f, indent=1)
                write_report(args.out, report(res, args))
        sw.close()
        db.close()
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
