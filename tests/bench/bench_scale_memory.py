#!/usr/bin/python3
"""Coordination cost, status time and sidecar memory at farm scale (issue 13 item 6),
for several binaries side by side on the same farm, at MariaDB's default settings.

The wikis are idle job tables with platform rows (workloads.ScanWikis, no jobs): what
most of a large farm is, most of the time. One sidecar with the shipped settings
(its [scan_db] under a database user of its own, so MariaDB's per-user statistics tell
the coordination statements apart from the scan's); MediaWiki is a closed port. After
the sidecar's first complete sweep, a window of --window seconds measures the
coordination user's statements and rows written per second; then the sidecar's
RssAnon, Pss and Pss_Anon (/proc/PID/status, smaps_rollup) and VmHWM, and how long
`jobdrainer status` takes (median of 3).

    nice -n 10 /usr/bin/python3 tests/bench/bench_scale_memory.py \\
        --binary before=OLD --binary after=NEW [--counts 5000,20000] [--window 120] \\
        [--out tests/bench/results/scale_memory.md]
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_common import (SCAN_PASSWORD, SCAN_USER, BenchFarm, Binary, DbStats, Pod,  # noqa: E402
                          Pods, create_scan_user, farm_mod, free_port, log, median,
                          new_workdir, proc_stats, reset_coordination, sidecar_ini, sidecar_mod,
                          user_statements, write_report)
from workloads import SCAN_VERSION, ScanWikis  # noqa: E402


def sweeps(pod):
    return sum(1 for l in pod.lines() if l.get("msg") == "scan")


def smaps_rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("Pss:", "Pss_Anon:", "Rss:"):
                out[parts[0][:-1]] = int(parts[1])
    return out


def status_seconds(binary, ini):
    times = []
    for _ in range(3):
        t = time.monotonic()
        r = subprocess.run([binary.path, "--config", ini, "status"], capture_output=True,
                           text=True, timeout=120)
        times.append(time.monotonic() - t)
        if r.returncode != 0:
            raise RuntimeError("status failed: %s" % r.stderr)
    return median(times)


def measure(farm, db, binary, n, window):
    reset_coordination(farm)
    sidecar_mod.BINARY = binary.path  # what Pod starts
    text, dropped = sidecar_ini(binary, farm, {
        "sidecar": {"log_level": "debug"},
        "mediawiki": {"port": free_port()},
        "discovery": {"version": SCAN_VERSION},
        "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""}})
    pod_dir = os.path.join(os.path.dirname(farm.dir), "pods")
    os.makedirs(pod_dir, exist_ok=True)
    with Pods() as pods:
        pod = pods.add(Pod(pod_dir, "scale-%d-%d" % (n, int(time.time())), text)).start()
        t = time.monotonic()
        deadline = t + 600 + n / 10
        while sweeps(pod) < 1:
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("no complete sweep from %s:\n%s"
                                   % (pod.name, pod.sc.raw()[-3000:]))
            time.sleep(0.5)
        first_sweep_s = time.monotonic() - t
        done = sweeps(pod)
        db0 = db.snapshot()
        time.sleep(window)
        db1 = db.snapshot()
        swept = sweeps(pod) - done
        st = proc_stats(pod.pid)
        roll = smaps_rollup(pod.pid)
        metrics = pod.sc.metrics()
        status_s = status_seconds(binary, pod.sc.ini)
        pod.stop()
    d = DbStats.delta(db0, db1)
    coord_user = d["users"].get(farm_mod.SIDECAR_USER, {})
    coord = user_statements(d["users"], lambda u: u == farm_mod.SIDECAR_USER)
    secs = d["seconds"]
    return {
        "wikis": n, "binary": binary.version, "window_s": secs, "first_sweep_s": first_sweep_s,
        "sweeps_in_window": swept,
        "coord_statements_per_s": coord["statements"] / secs,
        "coord_rows_written_per_s": (coord_user.get("ROWS_UPDATED", 0)
                                     + coord_user.get("ROWS_INSERTED", 0)) / secs,
        "coord_busy_s_per_min": coord["busy_s"] / secs * 60,
        "rss_anon_kib": st.get("RssAnon"), "vm_hwm_kib": st.get("VmHWM"),
        "pss_kib": roll.get("Pss"), "pss_anon_kib": roll.get("Pss_Anon"),
        "status_s": status_s,
        "sweep_period_s": metrics.get("jobdrainer_scan_sweep_period_seconds"),
        "rows": {k: v for k, v in metrics.items() if k.startswith("jobdrainer_scan_rows_total")},
        "dropped_keys": dropped,
    }


def fmt(v, digits=1):
    return "-" if v is None else ("%.*f" % (digits, v))


def report(res, args):
    out = ["# Coordination cost and sidecar memory at farm scale", "",
           "`/usr/bin/python3 tests/bench/bench_scale_memory.py %s` on %s (2 cores, shared "
           "with other work). Idle wikis (a job table and platform rows each, no jobs), one "
           "sidecar with the shipped settings, MariaDB at its defaults. After the first "
           "complete sweep, a %d s window: statements and rows written per second by the "
           "sidecar's coordination/platform user (MariaDB USER_STATISTICS; the scan has a "
           "user of its own), then the sidecar's memory and `jobdrainer status` (median "
           "of 3)." % (" ".join(sys.argv[1:]), res["date"], args.window), "",
           "| wikis | binary | coord statements/s | coord rows written/s | sweeps in window "
           "| first sweep | RssAnon | Pss | Pss_Anon | VmHWM | status |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        out.append("| %d | %s | %s | %s | %d | %s s | %s KiB | %s KiB | %s KiB | %s KiB | %s s |"
                   % (r["wikis"], r["label"], fmt(r["coord_statements_per_s"], 2),
                      fmt(r["coord_rows_written_per_s"], 1), r["sweeps_in_window"],
                      fmt(r["first_sweep_s"], 0), r["rss_anon_kib"], r["pss_kib"],
                      r["pss_anon_kib"], r["vm_hwm_kib"], fmt(r["status_s"], 2)))
    by = {}
    for r in res["runs"]:
        by.setdefault(r["wikis"], []).append(r)
    out += ["", "Ratios to the first binary of each size:", ""]
    for n, runs in sorted(by.items()):
        base = runs[0]
        for r in runs[1:]:
            def ratio(k):
                return ("%.2fx" % (r[k] / base[k])) if base[k] else "-"
            out.append("- %d wikis, %s / %s: coordination statements %s, rows written %s, "
                       "RssAnon %s, status time %s"
                       % (n, r["label"], base["label"], ratio("coord_statements_per_s"),
                          ratio("coord_rows_written_per_s"), ratio("rss_anon_kib"),
                          ratio("status_s")))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--counts", default="5000,20000")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scale_memory.md"))
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    binaries = [(b.split("=", 1)[0], Binary(b.split("=", 1)[1])) for b in args.binary]
    workdir = new_workdir("jdscale-")
    farm = BenchFarm(os.path.join(workdir, "farm"))
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "counts": counts, "runs": []}
    try:
        farm.start()
        create_scan_user(farm)
        db = DbStats(farm)
        sw = ScanWikis(farm)
        for n in counts:
            t = time.monotonic()
            sw.grow(n, with_jobs_every=0, big_rows=0)
            log("%d wikis created in %.0fs", n, time.monotonic() - t)
            for label, b in binaries:
                r = measure(farm, db, b, n, args.window)
                r["label"] = label
                res["runs"].append(r)
                log("%d wikis, %s: %.2f coord statements/s, %.1f rows/s, RssAnon %s KiB, "
                    "status %.2f s", n, label, r["coord_statements_per_s"],
                    r["coord_rows_written_per_s"], r["rss_anon_kib"], r["status_s"])
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
