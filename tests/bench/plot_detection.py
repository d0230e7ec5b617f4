#!/usr/bin/python3
"""The detection plot of the benchmark report (issue 13): how long a job on a cold wiki
waited to be seen, and what share of a database core detection used, by farm size, on
one MariaDB server at its default settings, without the binary log feed. Drawn from
the recorded results of three benchmarks (nothing is re-run):

- scan_budget.json (bench_scan_budget.py, "after" runs): the 5 % budget alone;
- db_servers.json (bench_db_servers.py, "one server" runs): the 5 % budget alone;
- sweep_floor.json (bench_scan_budget.py, before = the 5 % budget alone, after =
  with [scan] max_sweep_seconds = 120, the shipped default).

    /usr/bin/python3 tests/bench/plot_detection.py [--results tests/bench/results]
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGET_ALONE = "5 % budget alone"
WITH_FLOOR = "with max_sweep_seconds = 120"


def load(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def points(results):
    """[(series, wikis, p50 s, max s, share of a core)] from the recorded runs."""
    out = []
    sb = load(results, "scan_budget.json")
    for r in (sb or {}).get("runs", []):
        if r["label"] == "after":
            out.append((BUDGET_ALONE, r["wikis"], r["latency_p50_s"], r["latency_max_s"],
                        r["scan_busy_s_per_min"] / 60))
    ds = load(results, "db_servers.json") or {}
    for runs in ds.values():
        for r in runs["runs"]:
            if r["label"] == "one server":
                share = r["per_server"]["main"]["busy_s_per_min"] / 60
                out.append((BUDGET_ALONE, r["wikis"], r["latency_p50_s"], r["latency_max_s"],
                            share))
    sf = load(results, "sweep_floor.json")
    for r in (sf or {}).get("runs", []):
        series = BUDGET_ALONE if r["label"] == "before" else WITH_FLOOR
        out.append((series, r["wikis"], r["latency_p50_s"], r["latency_max_s"],
                    r["scan_busy_s_per_min"] / 60))
    return sorted(out, key=lambda p: (p[0], p[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    pts = points(args.results)
    fig, (wait, share) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {BUDGET_ALONE: ("tab:red", "o"), WITH_FLOOR: ("tab:blue", "s")}
    for series, (color, marker) in styles.items():
        mine = [p for p in pts if p[0] == series and p[2] is not None]
        if not mine:
            continue
        xs = [p[1] for p in mine]
        wait.plot(xs, [p[3] for p in mine], marker=marker, color=color,
                  label="%s: max" % series)
        wait.plot(xs, [p[2] for p in mine], marker=marker, color=color, linestyle="--",
                  label="%s: p50" % series)
        share.plot(xs, [100 * p[4] for p in mine], marker=marker, color=color, label=series)
    for ax in (wait, share):
        ax.set_xscale("log")
        ax.set_xlabel("wikis on one MariaDB server (default settings)")
        ax.grid(True, which="both", alpha=0.3)
    left = wait.get_xlim()[0]
    wait.axhline(180, color="black", linewidth=0.8)
    wait.text(left, 184, " 3-minute promise", fontsize=8)
    wait.axhline(60, color="grey", linewidth=0.8, linestyle=":")
    wait.text(left, 64, " issue's 60 s target", fontsize=8, color="grey")
    share.axhline(5, color="grey", linewidth=0.8, linestyle=":")
    share.text(share.get_xlim()[0], 5.2, " [scan] db_budget_percent", fontsize=8, color="grey")
    wait.set_ylabel("cold-wiki job: seconds until seen")
    share.set_ylabel("% of one database core (BUSY_TIME)")
    wait.legend(fontsize=7)
    share.legend(fontsize=7)
    fig.suptitle("Detection without the binary log feed, by farm size", fontsize=10)
    fig.tight_layout()
    path = os.path.join(args.results, "detection.png")
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
