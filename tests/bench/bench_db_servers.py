#!/usr/bin/python3
"""Detection over several database servers (issue 13 item 4): the same number of wikis
on one MariaDB server, or spread over two, scanned by one sidecar with the shipped
[scan] settings (a budget per server), at MariaDB's default settings.

Three sets of N wikis (workloads.ScanWikis: a job table and platform rows each, every
10th wiki with 20 ready jobs): "sa" and "sb" on the main server, "sc" on a second
server (Farm.add_db_server). Run "one server" discovers sa + sb (2N wikis, all on the
main server); run "two servers" discovers sa + sc (2N wikis, N on each, the fifth
discovery column naming sc's server). Measured over a window after every server's
first complete sweep: the scan user's BUSY_TIME per server (USER_STATISTICS on each),
the sweep period gauge, and how long probe jobs inserted on random cold wikis wait until
their jd_wiki row shows them. MediaWiki is a closed port: only detection is measured.

    nice -n 19 /usr/bin/python3 tests/bench/bench_db_servers.py --binary build/jobdrainer
        [--wikis 1000] [--window 120] [--probes 12]
        [--out tests/bench/results/db_servers.md]
"""

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_common  # noqa: E402
from bench_common import (SCAN_PASSWORD, SCAN_USER, BenchFarm, Binary, DbStats, Pod,  # noqa: E402
                          Pods, create_scan_user, free_port, log, new_workdir, percentile,
                          reset_coordination, sidecar_ini, user_statements, write_report)
from bench_scan_budget import detected, fmt, push_probe  # noqa: E402
from workloads import SCAN_VERSION, ScanWikis  # noqa: E402

QUERY = """SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value, fs.server
FROM wikis w
JOIN wiki_dbs d ON d.wiki_id = w.id
LEFT JOIN wiki_settings s ON s.wiki_id = w.id AND s.name = 'wgSecretKey'
LEFT JOIN farm_wiki_servers fs ON fs.wiki_id = w.id
WHERE w.domain LIKE '%s%%%%' OR w.domain LIKE '%s%%%%'
ORDER BY w.id"""


# The shipped [scan] db_budget_percent (conf/jobdrainer.ini), which the runs keep.
BUDGET_PERCENT = 5


def sweeps_done(pod, servers):
    """Every server has logged a complete sweep ("scan"; the main server's has no
    server field)."""
    seen = {l.get("server") for l in pod.lines() if l.get("msg") == "scan"}
    return all(s in seen for s in servers)


def measure(farm, stats, binary, sets, window, probes, seed):
    """One sidecar discovering the two ScanWikis of `sets`; returns its figures."""
    reset_coordination(farm)
    for sw in sets:
        for db_name, pre in sw.tables:
            farm.sql("DELETE FROM `%s`.`%s_job` WHERE job_cmd = 'jdScanProbe'" % (db_name, pre),
                     server=sw.server)
    bench_common.sidecar_mod.BINARY = binary.path
    text, _ = sidecar_ini(binary, farm, {
        "sidecar": {"workers": 1, "log_level": "debug"},
        "mediawiki": {"port": free_port()},
        "discovery": {"version": SCAN_VERSION, "interval": 3600,
                      "query": QUERY % (sets[0].label, sets[1].label)},
        "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""},
        # A binary with the allow-list logs in only where it is told to.
        "scan": {"allowed_servers": " ".join(farm.db_server(sw.server).address
                                             for sw in sets if sw.server) or None}})
    rng = random.Random(seed)
    # Cold: no jobs of their own (ScanWikis gives every 10th wiki 20).
    cold = [(sw, i) for sw in sets for i in range(len(sw.tables)) if i % 10 != 1]
    chosen = rng.sample(cold, min(probes, len(cold)))
    offsets = sorted(rng.uniform(0, window * 0.8) for _ in chosen)
    servers = {None} | {farm.db_server(sw.server).address for sw in sets if sw.server}
    pushed, seen = {}, {}
    pod_dir = os.path.join(os.path.dirname(farm.dir), "pods")
    os.makedirs(pod_dir, exist_ok=True)
    with Pods() as pods:
        pod = pods.add(Pod(pod_dir, "servers-%d" % int(time.time()), text)).start()
        t = time.monotonic()
        deadline = t + 600
        while not sweeps_done(pod, servers):
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("no complete sweep from %s:\n%s"
                                   % (pod.name, pod.sc.raw()[-3000:]))
            time.sleep(0.2)
        first_sweep_s = time.monotonic() - t
        db0 = {name: s.snapshot() for name, s in stats.items()}
        t0 = time.monotonic()
        pending = list(zip(offsets, chosen))
        db1 = metrics = None
        while time.monotonic() - t0 < window or (len(seen) < len(pushed) and
                                                 time.monotonic() - t0 < window + 300):
            now = time.monotonic() - t0
            while pending and pending[0][0] <= now:
                _, (sw, i) = pending.pop(0)
                db_name, pre = sw.tables[i]
                pushed[sw.domain(i)] = push_probe(farm, "`%s`.`%s_job`" % (db_name, pre),
                                                  server=sw.server)
            if now >= window and db1 is None:
                db1 = {name: s.snapshot() for name, s in stats.items()}
                metrics = pod.sc.metrics()
            for dom in detected(farm, [d for d in pushed if d not in seen]):
                seen[dom] = time.time() - pushed[dom]
            time.sleep(0.1)
        if db1 is None:
            db1 = {name: s.snapshot() for name, s in stats.items()}
            metrics = pod.sc.metrics()
        pod.stop()
    per_server = {}
    for name in stats:
        d = DbStats.delta(db0[name], db1[name])
        scan = user_statements(d["users"], lambda u: u == SCAN_USER)
        per_server[name] = {"busy_s_per_min": scan["busy_s"] / (d["seconds"] / 60.0),
                            "statements_per_min": scan["statements"] / (d["seconds"] / 60.0)}
    lat = sorted(seen.values())
    return {
        "wikis": sum(len(sw.tables) for sw in sets),
        "sets": [sw.label for sw in sets], "first_sweep_s": first_sweep_s,
        "per_server": per_server, "probes": len(pushed), "detected": len(seen),
        "latency_p50_s": percentile(lat, 50) if lat else None,
        "latency_max_s": lat[-1] if lat else None, "latencies_s": lat,
        "sweep_period_s": metrics.get("jobdrainer_scan_sweep_period_seconds"),
        "budget_used": metrics.get("jobdrainer_scan_db_budget_used_ratio"),
    }


def report(res, args):
    lines = ["# Detection over several database servers", "",
             "Generated by `%s` on %s (%d cores; run under `nice -n 19`), binary %s."
             % (" ".join(["tests/bench/bench_db_servers.py"] + sys.argv[1:]), res["date"],
                os.cpu_count(), res["binary"]), "",
             "One sidecar, shipped `[scan]` settings (budget %s%% of a core per server), "
             "MariaDB's default settings on both servers (%s). %d wikis in each run: all "
             "on the main server, or half on each of two. Database time is the scan user's "
             "BUSY_TIME in each server's USER_STATISTICS over a %d s window after every "
             "server's first complete sweep; latency is from a probe job's INSERT on a "
             "random cold wiki to its jd_wiki row showing it (polled every 100 ms)." % (
                 res["budget_percent"],
                 ", ".join("%s=%s" % kv for kv in sorted(res["server_variables"].items())),
                 2 * args.wikis, args.window), "",
             "| layout | wikis | main server: DB s/min (share of a core) | second server: DB s/min (share) | sweep period s | first sweep s | cold probes found | latency p50 s | max s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        cells = []
        for name in ("main", "db2"):
            b = r["per_server"][name]["busy_s_per_min"]
            cells.append("%s (%s%%)" % (fmt(b, 3), fmt(100 * b / 60, 2)))
        lines.append("| %s | %d | %s | %s | %s | %.0f | %d/%d | %s | %s |" % (
            r["label"], r["wikis"], cells[0], cells[1], fmt(r["sweep_period_s"], 1),
            r["first_sweep_s"], r["detected"], r["probes"], fmt(r["latency_p50_s"], 1),
            fmt(r["latency_max_s"], 1)))
    one = [r for r in res["runs"] if r["label"] == "one server"]
    two = [r for r in res["runs"] if r["label"] == "two servers"]
    if one and two:
        a, b = two[0], one[0]

        def ratio(k):
            return fmt(a[k] / b[k], 2) if a[k] and b[k] else "-"
        lines += ["", "Two servers / one server (the same number of wikis): sweep period %s, "
                  "cold latency p50 %s, max %s." % (ratio("sweep_period_s"),
                                                    ratio("latency_p50_s"),
                                                    ratio("latency_max_s"))]
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--wikis", type=int, default=1000, help="wikis per set (N)")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--probes", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "db_servers.md"))
    args = ap.parse_args()
    binary = Binary(args.binary)
    workdir = new_workdir("jddbservers-")
    farm = BenchFarm(os.path.join(workdir, "farm"))
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "binary": binary.version, "runs": []}
    try:
        farm.start()
        farm.add_db_server("db2")
        create_scan_user(farm)
        create_scan_user(farm, server="db2")
        stats = {"main": DbStats(farm), "db2": DbStats(farm, server="db2")}
        res["server_variables"] = dict(stats["db2"].sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('table_open_cache', "
            "'table_definition_cache', 'innodb_buffer_pool_size')"))
        res["budget_percent"] = BUDGET_PERCENT
        sa, sb, sc = (ScanWikis(farm, label="sa"), ScanWikis(farm, label="sb"),
                      ScanWikis(farm, server="db2", label="sc"))
        for sw in (sa, sb, sc):
            t = time.monotonic()
            sw.grow(args.wikis)
            log("%d wikis %s created in %.0fs", args.wikis, sw.label, time.monotonic() - t)
        for label, sets in (("one server", (sa, sb)), ("two servers", (sa, sc))):
            r = measure(farm, stats, binary, sets, args.window, args.probes, seed=args.wikis)
            r["label"] = label
            res["runs"].append(r)
            log("%s: main %.3f DB s/min, db2 %.3f, sweep %s s, %d/%d found, p50 %s max %s",
                label, r["per_server"]["main"]["busy_s_per_min"],
                r["per_server"]["db2"]["busy_s_per_min"], fmt(r["sweep_period_s"], 1),
                r["detected"], r["probes"], fmt(r["latency_p50_s"], 1),
                fmt(r["latency_max_s"], 1))
            with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
                json.dump(res, f, indent=1)
            write_report(args.out, report(res, args))
        for sw in (sa, sb, sc):
            sw.close()
        for s in stats.values():
            s.close()
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
