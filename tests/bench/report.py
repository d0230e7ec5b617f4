"""REPORT.md and PNG plots from the results of run.py (results.json)."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = {"p99_s": 10.0, "max_s": 30.0, "ratio": 0.9, "idle_requests": 0, "rss_mib": 10.0,
           "scan_db_s": 1.0}
COLORS = {"jobdrainer": "#1b7837", "shipped": "#b2182b", "shipped-derived": "#ef8a62",
          "serial": "#2166ac", "inrequest": "#762a83"}
INF = float("inf")


def fs(v, unit="s", digits=1):
    """A duration for a table: '-' for None, '> x' for censored (inf)."""
    if v is None:
        return "-"
    if v == INF:
        return "never"
    if unit == "s" and v >= 120:
        return "%.1f min" % (v / 60)
    return ("%%.%df %%s" % digits) % (v, unit)


def lat(v, summ, key=None):
    """A latency percentile; when it falls on jobs never run, its lower bound (those jobs
    counted with their age at the end of the run), marked with a dagger."""
    if v == INF:
        lb = summ.get(key + "_lb") if key else None
        return "> %s &dagger;" % fs(lb) if lb is not None else "never &dagger;"
    return fs(v)


def mib(kib):
    return None if kib is None else kib / 1024.0


def verdict(ok):
    return "**met**" if ok else "**missed**"


# ---- plots ---------------------------------------------------------------------------------


def plot_throughput(tp, path):
    names, rates = ["runJobs.php"], [_med([r["runjobs_php"]["rate"] for r in tp["rounds"]])]
    for m in tp["maxjobs"]:
        names.append("jobdrainer\nmaxjobs=%d" % m)
        rates.append(_med([r["jobdrainer_%d" % m]["rate"] for r in tp["rounds"]]))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bars = ax.bar(names, rates, color=["#2166ac"] + ["#1b7837"] * len(tp["maxjobs"]))
    for b, r in zip(bars, rates):
        ax.text(b.get_x() + b.get_width() / 2, r, "%.0f" % r, ha="center", va="bottom")
    ax.axhline(rates[0] * TARGETS["ratio"], color="grey", ls="--", lw=1,
               label="target: 0.9 x runJobs.php")
    ax.set_ylim(0, max(rates) * 1.15)
    ax.set_ylabel("jobs/s (median of rounds)")
    ax.set_title("Throughput, one wiki, %d NullJobs, one worker" % tp["jobs"])
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency_cdf(fair, path):
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for r in fair["runs"] + fair["derived"]:
        vals = list(r["latencies"]) + [INF] * len(r.get("censored", []))
        if not vals:
            continue
        vals.sort()
        xs, ys = [], []
        n = len(vals)
        for i, v in enumerate(vals):
            if v == INF:
                break
            xs.append(max(v, 0.05))
            ys.append((i + 1) / n)
        ls = "--" if r["kind"] == "shipped-derived" else "-"
        ax.step(xs, ys, where="post", ls=ls, color=COLORS.get(r["kind"], "black"),
                label=_short(r), lw=1.6)
    ax.axvline(TARGETS["p99_s"], color="grey", ls=":", lw=1)
    ax.axvline(TARGETS["max_s"], color="grey", ls=":", lw=1)
    ax.text(TARGETS["p99_s"], 0.02, " 10 s", color="grey", fontsize=8)
    ax.text(TARGETS["max_s"], 0.02, " 30 s", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("small-wiki probe job: queued -> run (s, log scale)")
    ax.set_ylabel("fraction of probe jobs run")
    ax.set_ylim(0, 1.02)
    ax.set_title("Queue-to-run latency of small wikis' jobs (curve ends below 1: jobs never run)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_big_wiki(fair, path):
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.6), sharex=True)
    for r in fair["runs"]:
        s = r["series"]
        if not s:
            continue
        c = COLORS.get(r["kind"], "black")
        a1.plot([x[0] for x in s], [x[1] for x in s], color=c, label=_short(r), lw=1.5,
                ls="-" if r["name"] != "shipped-900s" else "--")
        # jobs/s over 5-second windows
        ts, rates = _windowed(s, 5.0)
        a2.plot(ts, rates, color=c, lw=1.2)
    a1.set_ylabel("big wiki: jobs queued")
    a1.set_title("Big wiki (backlog %d jobs) while small wikis get probe jobs"
                 % fair["params"]["backlog"], fontsize=9)
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    a2.set_ylabel("big wiki: jobs run/s (5 s windows)")
    a2.set_xlabel("seconds since the runner started")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scan(sc, path):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    d = sc["default"]
    xs = [r["wikis"] for r in d]
    ax.plot(xs, [r["scan_ms_median"] for r in d], "o-", color="#1b7837",
            label="scan wall time (sidecar log)")
    ax.plot(xs, [r["scan_db_busy_ms"] for r in d], "s--", color="#b2182b",
            label="database time (busy, scan user)")
    if sc["tuned"]:
        t = sc["tuned"]
        ax.plot([r["wikis"] for r in t], [r["scan_ms_median"] for r in t], "o-", color="#7fbc41",
                label="wall, server caches sized for the farm")
        ax.plot([r["wikis"] for r in t], [r["scan_db_busy_ms"] for r in t], "s--",
                color="#ef8a62", label="database, server caches sized for the farm")
    if xs:
        base = d[0]["scan_db_busy_ms"] / xs[0]
        ax.plot(xs, [base * x for x in xs], ":", color="grey",
                label="linear from the first database time")
    ax.axhline(1000 * TARGETS["scan_db_s"], color="black", lw=0.8, ls=":")
    ax.text(xs[0] if xs else 1, 1000 * TARGETS["scan_db_s"] * 1.08, "target: 1 s database time",
            fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wikis")
    ax.set_ylabel("ms per scan")
    ax.set_title("One backlog scan vs number of wikis", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _windowed(series, w):
    if not series:
        return [], []
    end = series[-1][0]
    ts, rates = [], []
    t = 0.0
    while t + w <= end + 0.5:
        ran = sum(x[2] for x in series if t < x[0] <= t + w)
        ts.append(t + w / 2)
        rates.append(ran / w)
        t += w
    return ts, rates


def _short(r):
    return {"jobdrainer": r["label"], "serial": "serial runJobs.php loop"}.get(r["kind"],
                                                                              r["label"])


def _med(v):
    v = sorted(v)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# ---- Markdown ------------------------------------------------------------------------------


def write_report(res, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    L = []
    meta = res["meta"]
    L += ["# jobdrainer benchmark", "",
          "Generated by `%s` on %s; the run took %s. Size **%s** (`--size full` runs the "
          "issue's numbers: see [Running it](#running-it))." % (
              meta["command"], meta["date"], fs(meta["duration_s"]), meta["size"]), "",
          "- binary: `%s`, %s" % (meta["binary_version"], meta["source"]),
          "- machine: %d CPU cores, %s, MariaDB %s, MediaWiki 1.39 (Debian) on Apache "
          "prefork + mod_php %s; the farm and every runner share these cores "
          "(load average before the run: %s, after: %s). The machine is shared with other "
          "work: CPU-heavy phases are kept short, and absolute rates carry that noise; the "
          "comparisons are made in the same run on the same farm." % (
              meta["cpus"], meta["kernel"], meta["mariadb"], meta["php"],
              meta["loadavg_start"], meta["loadavg_end"]),
          "- sidecar configuration: the binary's defaults (`conf/jobdrainer.ini`) except "
          "where a workload says otherwise%s." % (
              "; keys this binary does not know and were left out: %s" % ", ".join(
                  "`%s`" % k for k in meta["dropped_keys"]) if meta["dropped_keys"] else ""),
          ""]
    if meta.get("errors"):
        L += ["**Workloads that failed in this run:**", ""]
        L += ["- %s: `%s`" % (k, v.splitlines()[0][:300]) for k, v in meta["errors"].items()]
        L.append("")
    L += _summary(res)
    L += _misses(res)
    if meta.get("anomalies"):
        L += ["### Anomalies seen in this run", ""]
        for a in meta["anomalies"]:
            L.append("- %s, `%s`: %s (batch lines and requests in `results.json`, "
                     "`meta.anomalies`)." % (a["workload"], a["pod"], a["what"]))
        L.append("")
    if "throughput" in res:
        plot_throughput(res["throughput"], os.path.join(out_dir, "throughput.png"))
        L += _throughput(res["throughput"])
    if "fairness" in res:
        plot_latency_cdf(res["fairness"], os.path.join(out_dir, "fairness_latency_cdf.png"))
        plot_big_wiki(res["fairness"], os.path.join(out_dir, "fairness_big_wiki.png"))
        L += _fairness(res["fairness"])
    if "idle" in res:
        L += _idle(res["idle"])
    if "scan" in res:
        plot_scan(res["scan"], os.path.join(out_dir, "scan_scale.png"))
        L += _scan(res["scan"])
    L += _method(res)
    if meta.get("configs"):
        L += ["## Appendix: effective sidecar configuration", "",
              "As `jobdrainer --check-config` printed it for each workload's sidecars "
              "(secrets masked; ports and holder names are per run).", ""]
        for name, text in meta["configs"].items():
            L += ["<details><summary>%s</summary>" % name, "", "```ini", text.rstrip(), "```",
                  "", "</details>", ""]
    with open(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write("\n".join(L).rstrip() + "\n")


def _rss_all(res):
    vals = []
    tp = res.get("throughput")
    if tp:
        for r in tp["rounds"]:
            for k, v in r.items():
                if k.startswith("jobdrainer"):
                    vals.append((v["vmhwm_kib"], v.get("rss_anon_kib"), v.get("rss_file_kib"),
                                 "throughput"))
    idle = res.get("idle")
    if idle:
        for st in idle["jobdrainer"]["sidecars"].values():
            vals.append((st["vmhwm_kib"], st["rss_anon_kib"], st["rss_file_kib"], "idle"))
    fair = res.get("fairness")
    if fair:
        for r in fair["runs"]:
            if r["kind"] == "jobdrainer" and r["extra"].get("sidecar_vmhwm_kib"):
                vals.append((r["extra"]["sidecar_vmhwm_kib"], None, None, "fairness"))
    return vals


def _summary(res):
    L = ["## Targets", "",
         "| target | measured | |", "|---|---|---|"]
    fair = res.get("fairness")
    if fair:
        jd = next((r for r in fair["runs"] if r["kind"] == "jobdrainer"), None)
        if jd:
            d = jd["latency_during_drain"]
            L.append("| small-wiki p99 queue-to-run latency < 10 s while the big wiki drains "
                     "| %s (%d probe jobs pushed while it drained; all probes: p99 %s) | %s |"
                     % (lat(d["p99"], d, "p99"), d["n"], lat(jd["latency"]["p99"], jd["latency"], "p99"),
                        verdict(d["p99"] is not None and d["p99"] < TARGETS["p99_s"])))
            L.append("| small-wiki max latency < 30 s while the big wiki drains | %s | %s |"
                     % (lat(d["max"], d, "max"),
                        verdict(d["max"] is not None and d["max"] < TARGETS["max_s"])))
    tp = res.get("throughput")
    if tp:
        php = _med([r["runjobs_php"]["rate"] for r in tp["rounds"]])
        for m in tp["maxjobs"]:
            jd = _med([r["jobdrainer_%d" % m]["rate"] for r in tp["rounds"]])
            L.append("| throughput >= 0.9 x runJobs.php (one worker, maxjobs=%d%s) | %.0f vs "
                     "%.0f jobs/s = **%.2f** | %s |" % (
                         m, ", the default" if m == 100 else "", jd, php, jd / php,
                         verdict(jd / php >= TARGETS["ratio"])))
    idle = res.get("idle")
    if idle:
        j = idle["jobdrainer"]
        L.append("| 0 MediaWiki requests when idle | %d requests (%d RunJobs) from %d sidecars "
                 "in %s | %s |" % (j["requests"], j["runjobs_posts"], idle["pods"],
                                   fs(j["lifetime_s"]), verdict(j["requests"] == 0)))
    rss = _rss_all(res)
    if rss:
        peak = max(rss, key=lambda x: x[0])
        L.append("| sidecar peak RSS < 10 MiB | %.1f MiB (VmHWM, worst of %d sidecar runs%s) "
                 "| %s |" % (mib(peak[0]), len(rss),
                             "; of which %.1f MiB anonymous, %.1f MiB mapped files"
                             % (mib(peak[1]), mib(peak[2])) if peak[1] is not None else "",
                             verdict(mib(peak[0]) < TARGETS["rss_mib"])))
    sc = res.get("scan")
    if sc and sc["default"]:
        big = sc["default"][-1]
        tuned = next((t for t in sc["tuned"] if t["wikis"] == big["wikis"]), None)
        L.append("| one scan of %d wikis < 1 s of database time | %.0f ms with MariaDB's "
                 "default settings%s | %s |" % (
                     big["wikis"], big["scan_db_busy_ms"],
                     "; %.0f ms with table caches, InnoDB open files and buffer pool sized for "
                     "the farm" % tuned["scan_db_busy_ms"]
                     if tuned else "",
                     verdict(big["scan_db_busy_ms"] < 1000 * TARGETS["scan_db_s"]) +
                     (" (tuned: %s)" % verdict(tuned["scan_db_busy_ms"] <
                                               1000 * TARGETS["scan_db_s"]) if tuned else "")))
        if big["wikis"] < 5000:
            L.append("| | (this size scans at most %d wikis; `--size full` scans 5,000) | |"
                     % big["wikis"])
    L.append("")
    return L


def _misses(res):
    """For each missed target, what the measurements say limits it."""
    out = []
    tp = res.get("throughput")
    if tp:
        php = _med([r["runjobs_php"]["rate"] for r in tp["rounds"]])
        for m in tp["maxjobs"]:
            j = [r["jobdrainer_%d" % m] for r in tp["rounds"]]
            if _med([x["rate"] for x in j]) / php < TARGETS["ratio"]:
                per_batch = _med([x["drain_s"] / x["requests"] for x in j])
                out.append("- **Throughput, maxjobs=%d**: every batch is one web request that "
                           "boots MediaWiki before running its %d jobs (%d requests, %.0f ms "
                           "each on average, vs one process for runJobs.php); larger batches "
                           "amortise it (see maxjobs=%d)." % (
                               m, m, _med([x["requests"] for x in j]), 1000 * per_batch,
                               max(tp["maxjobs"])))
    fair = res.get("fairness")
    if fair:
        jd = next((r for r in fair["runs"] if r["kind"] == "jobdrainer"), None)
        if jd:
            d = jd["latency_during_drain"]
            if d["p99"] is None or d["p99"] >= TARGETS["p99_s"] or d["max"] >= TARGETS["max_s"]:
                out.append("- **Small-wiki latency**: a new job waits for the next backlog scan "
                           "(`[scan] interval`), the next candidate poll "
                           "(`[coordination] poll_interval_ms`) and a free worker; see the "
                           "statement mix and batch counts under section 2.")
    rss = _rss_all(res)
    if rss and mib(max(rss)[0]) >= TARGETS["rss_mib"]:
        idle = res.get("idle")
        top = (idle or {}).get("jobdrainer", {}).get("rss_by_mapping") or []
        files = [(n, k) for n, k in top if not n.startswith("[")]
        peak = max(rss, key=lambda x: x[0])
        out.append("- **Sidecar RSS**: the peak (%.1f MiB) is mostly pages of the executable "
                   "and shared libraries mapped from files (%s MiB), not the sidecar's own "
                   "memory (%s MiB anonymous: heap, thread stacks, buffers).%s "
                   "Getting under 10 MiB means fewer or smaller libraries resident (the "
                   "RunJobs client pulls in libcurl with its TLS and protocol dependencies "
                   "although it only speaks plain HTTP to 127.0.0.1), not a smaller heap. "
                   "File-backed pages are shared with any other process using the same "
                   "libraries and are reclaimable, but they count in RSS." % (
                       mib(peak[0]), "%.1f" % mib(peak[2]) if peak[2] else "?",
                       "%.1f" % mib(peak[1]) if peak[1] else "?",
                       " Largest: %s." % ", ".join("`%s` %.1f MiB" % (n, k / 1024.0)
                                                   for n, k in files[:5]) if files else ""))
    sc = res.get("scan")
    if sc and sc["default"]:
        big = sc["default"][-1]
        if big["scan_db_busy_ms"] >= 1000 * TARGETS["scan_db_s"]:
            small = sc["default"][0]
            tuned = next((t for t in sc["tuned"] if t["wikis"] == big["wikis"]), None)
            out.append("- **Scan of %d wikis**: %.0f ms of database time per scan with "
                       "MariaDB's defaults, %.0f us per wiki against %.0f us at %d wikis: the "
                       "cost per wiki grows with the farm because each wiki's part of the scan "
                       "statement opens its job table twice in a light scan and five times in a full one, "
                       "once a [scan] full_interval (%.0f table-cache misses per "
                       "scan with `table_open_cache=%s`) and the job tables' index pages no "
                       "longer fit the %d MiB buffer pool (%.0f pages per scan not found in "
                       "it).%s At the default `[scan] interval` of 5 s that is %.0f%% of a "
                       "database core, continuously." % (
                           big["wikis"], big["scan_db_busy_ms"],
                           1000 * big["scan_db_busy_ms"] / big["wikis"],
                           1000 * small["scan_db_busy_ms"] / small["wikis"], small["wikis"],
                           big["table_cache_misses_per_scan"],
                           sc["server_variables"].get("table_open_cache"),
                           int(sc["server_variables"].get("innodb_buffer_pool_size", 0)) >> 20,
                           big.get("buffer_pool_reads_per_scan", 0),
                           " With caches sized for the farm it takes %.0f ms (%.0f us per "
                           "wiki)%s." % (tuned["scan_db_busy_ms"],
                                         1000 * tuned["scan_db_busy_ms"] / tuned["wikis"],
                                         ", under the target" if tuned["scan_db_busy_ms"] <
                                         1000 * TARGETS["scan_db_s"] else ", still over")
                           if tuned else "",
                           100 * big["scan_db_busy_ms"] / 5000.0))
    if out:
        out = ["### Misses and what limits them", ""] + out + [""]
    return out


def _throughput(tp):
    L = ["## 1. Throughput", "",
         "One wiki, %d `NullJob`s (no sleep: the runners' own overhead), drained %d times "
         "by each runner, alternating, on the same wiki. jobdrainer runs one worker; its "
         "jobs/s is counted over the RunJobs requests (first request start to last request "
         "end, from Apache's access log); end-to-end adds process start, discovery and the "
         "first scan. runJobs.php is timed as a process (it includes PHP start-up, about "
         "0.1 s)." % (tp["jobs"], len(tp["rounds"])), "",
         "| runner | jobs/s (median) | rounds | ratio | end-to-end jobs/s | requests | "
         "runner CPU s | peak RSS |", "|---|---|---|---|---|---|---|---|"]
    php = [r["runjobs_php"] for r in tp["rounds"]]
    php_med = _med([x["rate"] for x in php])
    L.append("| `runJobs.php` | %.0f | %s | 1.00 | - | - | %.2f (PHP) | - |" % (
        php_med, ", ".join("%.0f" % x["rate"] for x in php), _med([x["cpu_s"] for x in php])))
    for m in tp["maxjobs"]:
        j = [r["jobdrainer_%d" % m] for r in tp["rounds"]]
        med = _med([x["rate"] for x in j])
        L.append("| jobdrainer, 1 worker, maxjobs=%d | %.0f | %s | %.2f | %.0f | %.0f | %.2f "
                 "(sidecar) | %.1f MiB |" % (
                     m, med, ", ".join("%.0f" % x["rate"] for x in j), med / php_med,
                     _med([x["rate_end_to_end"] for x in j]), _med([x["requests"] for x in j]),
                     _med([x["cpu_s"] for x in j]), mib(max(x["vmhwm_kib"] for x in j))))
    L += ["", "![throughput](throughput.png)", ""]
    return L


def _fairness(fair):
    p = fair["params"]
    L = ["## 2. Fairness and latency", "",
         "One big wiki starts with a backlog of %d `NullJob`s that sleep %d ms each (a "
         "stand-in for real jobs' cost); %d small wikis receive `farmProbe` jobs (1-3 per "
         "event) at random (Poisson, mean %g s between events per wiki; %d events, %d jobs "
         "in the first %d s). The probe job records when it was queued and when it ran, so "
         "latency = ran - queued, per job, from MediaWiki's side. Each runner gets the "
         "same schedule (same seed) on a fresh backlog, one after another on the same farm. "
         "A run ends when every probe job ran or a cap passed; probe jobs never run are "
         "shown as \"not run\" and count as infinitely late in the percentiles." % (
             p["backlog"], p["usleep"] // 1000, p["small_wikis"], p["mean_interval_s"],
             p["events_in_window"], p["probes_in_window"], p["window_s"]), "",
         "| runner | probe jobs run | p50 | p90 | p99 | max | p99 / max while the big wiki "
         "drains | big wiki drained after | big wiki jobs/s | requests to MediaWiki |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in fair["runs"]:
        s, d = r["latency"], r["latency_during_drain"]
        L.append("| %s | %d / %d | %s | %s | %s | %s | %s / %s | %s | %s | %d (%d RunJobs) |" % (
            r["label"], s["ran"], s["n"], lat(s["p50"], s, "p50"), lat(s["p90"], s, "p90"),
            lat(s["p99"], s, "p99"), lat(s["max"], s, "max"), lat(d["p99"], d, "p99"), lat(d["max"], d, "max"),
            fs(r["big_drained_s"]) if r["big_drained_s"] is not None else
            "not drained in %s (%d left)" % (fs(r["run_s"]), r["big_remaining_end"]),
            "%.0f" % r["big_rate_avg"] if r["big_rate_avg"] else "-",
            r["requests"]["total"], r["requests"]["runjobs_posts"]))
    for r in fair["derived"]:
        s = r["latency"]
        L.append("| %s | (model) | %s | %s | %s | %s | - | - | - | - |" % (
            r["label"], fs(s["p50"]), fs(s["p90"]), fs(s["p99"]), fs(s["max"])))
    if any(r["latency"]["unrun"] for r in fair["runs"]):
        L += ["", "&dagger; Falls on probe jobs that never ran before the run ended: a lower "
              "bound, counting each such job with its age at the end of the run."]
    L += ["", "![latency CDF](fairness_latency_cdf.png)", "",
          "![big wiki over time](fairness_big_wiki.png)", ""]
    # Runner details.
    L += ["Per runner:", ""]
    for r in fair["runs"]:
        e = r["extra"]
        cpu = r["cpu"]
        cost = "CPU: Apache/PHP %.1f s, MariaDB %.1f s%s%s" % (
            cpu["apache_s"], cpu["mysqld_s"] or 0,
            ", PHP CLI (runJobs.php, showJobs.php) %.1f s" % cpu["php_cli_s"]
            if cpu["php_cli_s"] > 0.05 else "",
            ", sidecars %.2f s" % cpu["sidecar_s"] if "sidecar_s" in cpu else "")
        if r["kind"] == "jobdrainer":
            ss = e.get("statement_sample") or {}
            kinds = ss.get("by_kind") or {}
            secs = ss.get("seconds") or 1
            lease = sum(v for k, v in kinds.items() if k.startswith("lease"))
            mix = ", ".join("%s %.1f/s" % (k, v / secs) for k, v in sorted(kinds.items()))
            L.append("- **%s**: %d batches (%d failed), %d of them on the big wiki; %s. "
                     "Lease operations: **%.1f/s** (acquire, renew, release; from MariaDB's "
                     "general log over %.0f s mid-run); all sidecar statements in that "
                     "sample: %s. Whole run, from USER_STATISTICS: coordination %.1f "
                     "statements/s (%.0f ms database time/s), backlog scan %.1f statements/s "
                     "(%.0f ms/s)." % (
                         r["label"], e["batches"], e["failed_batches"], e["big_wiki_batches"],
                         cost, lease / secs, secs, mix or "-",
                         r["db"]["sidecar"]["statements"] / r["db"]["seconds"],
                         1000 * r["db"]["sidecar"]["busy_s"] / r["db"]["seconds"],
                         r["db"]["scan"]["statements"] / r["db"]["seconds"],
                         1000 * r["db"]["scan"]["busy_s"] / r["db"]["seconds"]))
            if e.get("empty_batches") or e.get("parked"):
                L.append("  Batches that found nothing to run (`reached=none-ready`, 0 jobs): "
                         "**%d** of %d on small wikis, %d of them started within 2 s after "
                         "the other sidecar's batch on the same wiki ended (the lease was taken "
                         "from a candidate list read before that drain; acquiring a lease does "
                         "not re-check the backlog); \"wiki parked\" lines logged: **%d**%s. "
                         "Probe jobs are a type MediaWiki runs, so such a park follows from an "
                         "empty batch, not from unknown job types; a new job unparks the wiki "
                         "at the next scan." % (
                             e["empty_batches"], e["small_wiki_batches"],
                             e.get("empty_after_other_pod", 0), e["parked"],
                             ", e.g. `%s`" % _line(e["parked_sample"]) if e.get("parked_sample")
                             else ""))
            if e.get("warnings"):
                L.append("  Warnings/errors the sidecars logged: %d, e.g. `%s`" % (
                    len(e["warnings"]), _line(e["warnings"][0])))
        elif r["kind"] == "shipped":
            det = r.get("shipped_detail") or []
            waits = [x["wait_for_poll_s"] for x in det if x["new_pod"]]
            serv = [x["service_s"] for x in det if x["new_pod"]]
            caught = sum(1 for x in det if not x["new_pod"])
            skipped_first = sum(1 for x in det if x["skipped_first"])
            L.append("- **%s**: %d poll rounds (%s each, %d wikis one after another), %d pods "
                     "(at most %d at once); wikis with jobs skipped at a poll: %d because %d "
                     "pods were running (the limit), %d because their pod was still looping; "
                     "probe jobs run by a pod started after they were queued: %d (wait for "
                     "that pod's poll median %s, then pod start -> run median %s; %d of them "
                     "had been seen by an earlier poll that skipped the wiki), caught by a pod "
                     "already looping: %d; %s." % (
                         r["label"], e["poll_rounds"], fs(_med(e["round_seconds"]), digits=2),
                         p["small_wikis"] + 1, e["pods"], e["max_concurrent_pods"],
                         e["skipped_limit"], p["shipped_limit"], e["skipped_running"],
                         len(waits), fs(_med(waits)), fs(_med(serv)), skipped_first, caught,
                         cost))
        elif r["kind"] == "serial":
            L.append("- **%s**: %d runJobs.php processes, %d full round(s) over all wikis; %s." % (
                r["label"], e["runjobs_processes"], e["rounds"], cost))
        elif r["kind"] == "inrequest":
            rq = e["requests"]
            L.append("- **%s**: %d edits (api.php) and %d page views (index.php) sent; "
                     "big wiki jobs run during the run: %d; %s. MediaWiki 1.39 runs "
                     "`$wgJobRunRate` jobs only at the end of index.php requests, never "
                     "after api.php ones, so only page views move queues." % (
                         r["label"], rq.get("edit", {}).get("n", 0),
                         rq.get("read", {}).get("n", 0), r["big_jobs_run"], cost))
    if fair["derived"]:
        L += ["", "Derived rows (not measured): the shipped approach's latency at a %s poll "
              "interval, modelled per probe job as *wait for the next poll* (uniform over "
              "the interval) + *pod start -> run* as measured in the 1-minute run above "
              "(median %s); jobs a running pod caught keep their measured latency. "
              "Optimistic: wikis skipped at the pod limit wait whole extra intervals, which "
              "the model leaves out. `--size full` runs the 15-minute poller for real." % (
                  ", ".join("%d-minute" % (d["interval"] // 60) for d in fair["derived"]),
                  fs(fair["derived"][0]["service_median_s"]))]
    if fair.get("startup_effect"):
        L += ["", "Pod start-up time (Kubernetes scheduling and image start), derived from "
              "the measured run, which used %g s: a probe job waits for it when its wiki "
              "got a new pod after the job was queued (%.0f%% of them); jobs caught by a pod "
              "already looping do not." % (
                  p["pod_startup_s"], 100 * fair["startup_effect"][0]["share_new_pod"]), "",
              "| pod start-up%s | p50 | p99 | max |" % (
                  " (on top of the measured %g s)" % p["pod_startup_s"]
                  if p["pod_startup_s"] else ""), "|---|---|---|---|"]
        for s in fair["startup_effect"]:
            L.append("| %g s | %s | %s | %s |" % (s["startup_s"], fs(s["p50"]), fs(s["p99"]),
                                                  fs(s["max"])))
    L.append("")
    return L


def _line(d):
    return " ".join("%s=%s" % (k, v) for k, v in d.items() if k not in ("ts",))[:240]


def _idle(idle):
    j = idle["jobdrainer"]
    sc = list(j["sidecars"].values())
    secs = idle["seconds"]
    sr, se = idle["shipped_round"], idle["serial_round"]
    L = ["## 3. Idle cost", "",
         "%d wikis, no jobs anywhere. jobdrainer: %d sidecars with default settings, "
         "measured for %s after an 8 s warm-up (MediaWiki requests counted over each "
         "sidecar's whole life, start-up included). Database load from MariaDB's own "
         "counters (`Questions` minus the benchmark's own statements; per-user "
         "USER_STATISTICS: statements and server time). The shipped poller and the serial "
         "loop were measured over one round each; their rates follow from their schedule." % (
             idle["wikis"], idle["pods"], fs(secs)), "",
         "| approach | requests to MediaWiki | database statements/s | database time | "
         "CPU | memory |", "|---|---|---|---|---|---|"]
    L.append("| jobdrainer, %d sidecars | **%d** (%d RunJobs) | %.1f (Questions %.1f/s; "
             "coordination %.1f/s, scan %.1f/s) | %.1f ms/s (MariaDB process CPU %.1f ms/s) | "
             "%.3f s per sidecar per minute (%s over %s) | VmHWM %s MiB per sidecar |" % (
                 idle["pods"], j["requests"], j["runjobs_posts"], j["statements_per_s"],
                 j["questions_per_s"], j["coordination_statements_per_s"],
                 j["scan_statements_per_s"], 1000 * j["db_busy_s_per_s"],
                 1000 * (j["mysqld_cpu_s_per_s"] or 0),
                 60 * _med([s["cpu_s_window"] for s in sc]) / secs,
                 ", ".join("%.3f s" % s["cpu_s_window"] for s in sc), fs(secs),
                 ", ".join("%.1f" % mib(s["vmhwm_kib"]) for s in sc)))
    for label, every in (("1 min", 60), ("15 min", 900)):
        L.append("| shipped poller, every %s | %d per poll = %.2f/s | %.1f/s (%d per poll, "
                 "MediaWiki's) | %.1f ms/s | Apache/PHP %.2f s per poll | (Laravel queue "
                 "worker, not measured) |" % (
                     label, sr["requests"], sr["requests"] / every, sr["mw_statements"] / every,
                     sr["mw_statements"], 1000 * sr["mw_busy_s"] / every, sr["apache_cpu_s"]))
    L.append("| serial runJobs.php loop | 0 (CLI) | %.1f/s back to back (%d per round of %s) "
             "| %.1f ms/s | PHP CLI %.2f s per round = %.0f%% of a core back to back | %d "
             "PHP processes per round |" % (
                 se["mw_statements"] / se["round_s"], se["mw_statements"], fs(se["round_s"]),
                 1000 * se["mw_busy_s"] / se["round_s"], se["cpu_s"],
                 100 * se["cpu_s"] / se["round_s"], se["processes"]))
    L.append("| in-request (`$wgJobRunRate`) | 0 | 0 | 0 | 0 | (nothing runs without traffic) |")
    s0 = sc[0]
    L += ["", "Sidecar memory, split (one idle sidecar): VmHWM %.1f MiB = RssAnon %.1f MiB "
          "(heap, thread stacks) + RssFile %.1f MiB (the executable and the shared libraries "
          "it maps) + shared memory; %s threads. %d scans in the window." % (
              mib(s0["vmhwm_kib"]), mib(s0["rss_anon_kib"]), mib(s0["rss_file_kib"]),
              s0["threads"], j["scans"]), ""]
    if j.get("rss_by_mapping"):
        L += ["Largest resident mappings of that sidecar (from `/proc/PID/smaps`):", "",
              "| mapping | resident KiB |", "|---|---|"]
        L += ["| `%s` | %d |" % (name, kib) for name, kib in j["rss_by_mapping"]]
        L.append("")
    return L


def _scan(sc):
    L = ["## 4. Scale of the scan", "",
         "Wikis that exist only as a job table plus their platform rows (apidb `wikis`, "
         "`wiki_dbs`, `wiki_settings`), in databases of their own as on wbaas; every tenth "
         "has 20 ready jobs and one has %d. One sidecar scans them (`[scan] interval = 2` to "
         "collect scans faster; the rest default; its MediaWiki port is closed so no batch "
         "runs), with its `[scan_db]` connection under a database user of its own, so "
         "MariaDB's USER_STATISTICS give the scan's server time apart from everything "
         "else. Wall time is the sidecar's `msg=scan ... ms=` debug line (median of the "
         "scans after the first). Server variables: %s.%s" % (
             sc["big_rows"], ", ".join("%s=%s" % kv for kv in sorted(
                 sc["server_variables"].items())),
             " The wall time includes the sidecar's own pacing (`[scan] queries_per_second`, "
             "default 50 statements of 50 wikis a second, so at least 20 ms per 50 wikis): "
             "the database time is the load; growth and per-wiki cost below use it." if
             sc.get("paced") else ""), "",
         "| wikis | scan wall ms (median) | first scan ms | database time ms/scan (CPU) | "
         "statements/scan | rows read/scan | table cache misses/scan | buffer pool "
         "misses/scan | coordination writes ms/scan | database time growth | database time "
         "per wiki |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    prev = None
    for r in sc["default"]:
        growth = "-" if prev is None else "x%.1f for x%.0f wikis" % (
            r["scan_db_busy_ms"] / max(prev["scan_db_busy_ms"], 0.001), r["wikis"] / prev["wikis"])
        L.append("| %d | %.0f | %d | %.0f (%.0f) | %.0f | %.0f | %.0f | %.0f | %.0f | %s | "
                 "%.0f us |" % (
            r["wikis"], r["scan_ms_median"], r["first_scan_ms"], r["scan_db_busy_ms"],
            r["scan_db_cpu_ms"], r["scan_statements"], r["scan_rows_read"],
            r["table_cache_misses_per_scan"], r.get("buffer_pool_reads_per_scan", 0),
            r["coord_db_busy_ms"], growth,
            1000 * r["scan_db_busy_ms"] / r["wikis"]))
        prev = r
    if sc["tuned"]:
        L += ["", "The same after restarting MariaDB with caches sized for the largest farm "
              "(%s; each wiki's part of the scan statement opens its job table twice (five times in a full scan), and "
              "`innodb_open_files` cannot be changed without a restart):" % ", ".join(
                  "`%s=%s`" % kv for kv in sorted((sc.get("tuned_variables") or {}).items())),
              "",
              "| wikis | scan wall ms (median) | first scan ms | database time ms/scan (CPU) | "
              "table cache misses/scan | buffer pool misses/scan | database time per wiki |",
              "|---|---|---|---|---|---|---|"]
        for r in sc["tuned"]:
            L.append("| %d | %.0f | %d | %.0f (%.0f) | %.0f | %.0f | %.0f us |" % (
                r["wikis"], r["scan_ms_median"], r["first_scan_ms"], r["scan_db_busy_ms"],
                r["scan_db_cpu_ms"], r["table_cache_misses_per_scan"],
                r.get("buffer_pool_reads_per_scan", 0),
                1000 * r["scan_db_busy_ms"] / r["wikis"]))
        tv = sc.get("tuned_variables") or {}
        need = 5 * max(r["wikis"] for r in sc["tuned"])
        if tv and int(tv.get("table_open_cache", need)) < need:
            L += ["", "MariaDB capped `table_open_cache` at %s: it needs two file handles per "
                  "cached table and this machine's hard limit on open files is %s, so the "
                  "%d table handles one scan of %d wikis uses cannot all stay cached; the "
                  "misses that remain are cheap once the table definitions and InnoDB files "
                  "stay open." % (tv["table_open_cache"], tv.get("open_files_limit"), need,
                                  need // 5)]
    if sc["parts"]:
        n = sc["default"][-1]["wikis"]
        L += ["", "Where the time goes at %d wikis: each of the three parts of the per-wiki "
              "scan statement (`sidecar/scan.c` `add_wiki_query()`) run alone over every "
              "wiki, 50 per statement, by the benchmark (a copy of the SQL, for diagnosis "
              "only):" % n, "",
              "| caches | 'r' oldest ready job per type | 'm' MAX(job_id) | 's' stale claims |",
              "|---|---|---|---|"]
        for k, v in sc["parts"].items():
            L.append("| %s | %.0f ms | %.0f ms | %.0f ms |" % (
                "MariaDB defaults" if k == "default" else "sized for the farm",
                v["r"], v["m"], v["s"]))
    L += ["", "![scan scale](scan_scale.png)", ""]
    return L


def _method(res):
    meta = res["meta"]
    L = ["## Method, limits and caveats", ""]
    L += ["- Everything runs on one machine: MariaDB, Apache/mod_php, the sidecars, the "
          "baselines' PHP processes and the benchmark itself share %d cores, so runners "
          "compete with the farm they drive. Figures are from one run; the quick size has "
          "few samples (its p99 is close to its max)." % meta["cpus"],
          "- Job cost: the big wiki's jobs are `NullJob`s that sleep; real jobs "
          "(refreshLinks, search updates) also use CPU and the database. The probe jobs "
          "cost nothing, so latency is queueing and scheduling, which is what is compared.",
          "- The shipped approach is emulated from its code (wbstack/api "
          "`PollForMediaWikiJobsJob`, `ProcessMediaWikiJobsJob`): HTTP polls of "
          "`siteinfo` statistics one wiki after another; per wiki with jobs the verbatim "
          "`runJobs.php --maxjobs 1000; sleep 1; showJobs.php` loop as a local process "
          "instead of a Kubernetes pod (start-up 0 s measured, other values derived), at "
          "most %d at once (the quota; the code's own default is 8). The Laravel queue's "
          "latency between poll and pod is taken as 0." % meta["shipped_limit"],
          "- The serial loop runs `runJobs.php` without limits for each wiki in turn, "
          "back to back.",
          "- In-request runs set `$wgJobRunRate = 2` (wbstack's value) through the farm's "
          "settings override and drive anonymous api.php edits on the big wiki plus "
          "index.php page views spread over all wikis.",
          "- Percentiles are nearest-rank over every probe job pushed; jobs not run by the "
          "end of a run count as infinitely late.",
          ""]
    L += ["## Running it", "",
          "```sh",
          "make                                   # build/jobdrainer",
          "/usr/bin/python3 tests/bench/run.py --size quick   # %s" % (
              "about %s here" % fs(meta["duration_s"]) if meta["size"] == "quick" else "a few minutes"),
          "/usr/bin/python3 tests/bench/run.py --size full    # the issue's sizes, %s" % (
              meta["full_estimate"]),
          "/usr/bin/python3 tests/bench/run.py --only fairness,scan --out /tmp/bench-out",
          "```", "",
          "Run as root on Debian 12 with the packages of `make deps` plus "
          "`python3-matplotlib`. The benchmark starts its own farm (MariaDB + Apache + "
          "MediaWiki on loopback ports) in a directory under /tmp, stops every process it "
          "started, and writes `REPORT.md`, the PNG plots and `results.json` (every raw "
          "figure) into `--out`. Options: `--pod-startup S` (seconds each shipped-approach "
          "pod waits before its loop), `--binary PATH` (default: `make`, then "
          "`build/jobdrainer`), `--keep` (leave the farm directory for inspection).",
          "",
          "| size | throughput | fairness | idle | scan |", "|---|---|---|---|---|"]
    for name, sz in sorted(meta["sizes"].items(), key=lambda kv: kv[0] != "quick"):
        L.append("| %s | %d NullJobs x %d rounds | %d-job backlog + %d small wikis, %d s "
                 "window, shipped poll %s | %d wikis, %d s | %s wikis |" % (
                     name, sz["tput_jobs"], sz["tput_rounds"], sz["fair_backlog"],
                     sz["fair_small"], sz["fair_window"],
                     " and ".join("%d min" % (i // 60) for i in sz["shipped_intervals"]),
                     sz["idle_wikis"], sz["idle_seconds"],
                     " / ".join("%d" % c for c in sz["scan_counts"])))
    if meta.get("durations"):
        order = ["farm set-up", "throughput", "fairness", "idle", "scan"]
        L += ["", "Time per workload in this run: %s." % ", ".join(
            "%s %s" % (k, fs(meta["durations"][k])) for k in order if k in meta["durations"])]
    L.append("")
    return L
