"""The four workloads of the benchmark. Each takes a Ctx (the farm, the binary, the size)
and returns a JSON-able dict of results; report.py turns them into REPORT.md and plots.

1. throughput  one wiki, N NullJobs: jobdrainer (one worker) vs runJobs.php.
2. fairness    a big backlog on one wiki + probe jobs arriving at random on many small
               wikis: per-job queue-to-run latency on the small wikis and the big wiki's
               jobs/s over time, for jobdrainer and each baseline in turn.
3. idle        no jobs: requests to MediaWiki, database load, sidecar CPU and memory.
4. scan        50 / 500 / 5,000 wikis (job tables only): time and database load of one
               backlog scan.
"""

import datetime
import os
import random
import secrets
import threading
import time

import baselines
import bench_common
from bench_common import (SCAN_PASSWORD, SCAN_USER, DbStats, Farm, GeneralLog, Pod, Pods,
                          Sampler, access_entries_since, children_cpu,
                          classify_sidecar_statement, clear_jobs, farm_mod, free_port,
                          is_mediawiki_user, is_runjobs, log, median, percentile, proc_tree_cpu,
                          reset_coordination, sidecar_ini, user_statements)

SIZES = {
    "quick": {
        "tput_jobs": 3000, "tput_rounds": 2, "tput_maxjobs": [100, 1000],
        "fair_backlog": 10000, "fair_usleep": 3000, "fair_small": 20, "fair_window": 40,
        "fair_mean_interval": 10.0, "fair_tail": 40, "fair_pods": 2, "fair_workers": 2,
        "shipped_intervals": [60], "shipped_derived": [900], "shipped_limit": 16,
        "inreq_rate": 2, "inreq_edits_per_s": 2.0, "inreq_reads_per_s": 1.0,
        "inreq_tail": 10, "serial": True, "lease_log_seconds": 10,
        "idle_seconds": 40, "idle_wikis": 50, "idle_pods": 3,
        "scan_counts": [50, 500, 5000], "scan_scans": 4, "scan_interval": 2,
    },
    "full": {
        "tput_jobs": 20000, "tput_rounds": 3, "tput_maxjobs": [100, 1000],
        "fair_backlog": 50000, "fair_usleep": 3000, "fair_small": 100, "fair_window": 300,
        "fair_mean_interval": 30.0, "fair_tail": 120, "fair_pods": 2, "fair_workers": 2,
        "shipped_intervals": [60, 900], "shipped_derived": [], "shipped_limit": 16,
        "inreq_rate": 2, "inreq_edits_per_s": 2.0, "inreq_reads_per_s": 1.0,
        "inreq_tail": 60, "serial": True, "lease_log_seconds": 20,
        "idle_seconds": 300, "idle_wikis": 101, "idle_pods": 3,
        "scan_counts": [50, 500, 5000], "scan_scans": 8, "scan_interval": 2,
    },
}

BIG = "big.bench.test"
VERSION = farm_mod.DEFAULT_VERSION


class Ctx:
    def __init__(self, farm, binary, workdir, size_name, size, pod_startup=0.0):
        self.farm, self.binary, self.workdir = farm, binary, workdir
        self.size_name, self.size = size_name, size
        self.pod_startup = pod_startup
        self.db = DbStats(farm)
        self.smalls = []
        self.dropped_keys = set()
        self.configs = {}
        self.anomalies = []

    @property
    def fair_domains(self):
        return [BIG] + self.smalls

    def ini(self, overrides, record=None):
        """INI text for a sidecar; record: keep its effective configuration (as
        `jobdrainer --check-config` prints it) under that name for the report."""
        text, dropped = sidecar_ini(self.binary, self.farm, overrides)
        self.dropped_keys.update(dropped)
        if record and record not in self.configs:
            try:
                self.configs[record] = self.binary.effective_config(text)
            except RuntimeError as e:
                self.configs[record] = str(e)
        return text

    def pod_dir(self, what):
        d = os.path.join(self.workdir, what)
        os.makedirs(d, exist_ok=True)
        return d


def setup_wikis(ctx):
    """The big wiki first (lowest id: the shipped poller reaches it first), then the small
    ones, all full MediaWiki installs (cloned from the farm's template)."""
    if BIG not in ctx.farm.wikis:
        ctx.farm.add_wiki(BIG)
    for i in range(1, ctx.size["fair_small"] + 1):
        d = "small%03d.bench.test" % i
        if d not in ctx.farm.wikis:
            ctx.farm.add_wiki(d)
        if d not in ctx.smalls:
            ctx.smalls.append(d)


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- 1. throughput -------------------------------------------------------------------------


def _drain_with_jobdrainer(ctx, n, maxjobs, name):
    farm = ctx.farm
    reset_coordination(farm)
    clear_jobs(farm, [BIG])
    farm.push_null_jobs(BIG, n)
    ini = ctx.ini({"sidecar": {"workers": 1},
                   "mediawiki": {"maxjobs": maxjobs},
                   "discovery": {"version": VERSION}}, record="throughput")
    with Pods() as pods:
        t_start = time.time()
        pod = pods.add(Pod(ctx.pod_dir("throughput"), name, ini)).start()
        deadline = time.monotonic() + 600
        while farm.total_jobs(BIG) > 0:
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("jobdrainer did not drain %d jobs (%s)" % (n, pod.name))
            time.sleep(0.05)
        t_empty = time.time()
        stats = pod.proc_stats()
        pod.stop()
    posts = [e for e in access_entries_since(farm, t_start)
             if is_runjobs(e) and e["host"] == BIG]
    batches = pod.batches()
    ok = sum(int(b.get("jobs_ok", 0)) for b in batches)
    if ok != n:
        # MediaWiki's side (the queue is empty) is what the figures rest on; a sidecar
        # that logs another count is an anomaly to report, with its batch lines.
        ctx.anomalies.append({
            "workload": "throughput", "pod": name,
            "what": "jobdrainer's batch lines add up to %d jobs run; %d were queued and the "
                    "queue is empty" % (ok, n),
            "batches": [{k: b.get(k) for k in ("ts", "wiki", "outcome", "jobs_ok", "reached",
                                                "ms", "worker")} for b in batches],
            "requests": [(e["start"], e["request"][:120], e["status"], e["duration_us"])
                         for e in posts]})
        log("throughput: ANOMALY in %s: batch lines add up to %d jobs, %d queued", name, ok, n)
    first = min(e["start"] for e in posts)
    last = max(e["start"] + e["duration_us"] / 1e6 for e in posts)
    return {"jobs": n, "maxjobs": maxjobs, "drain_s": last - first,
            "rate": n / (last - first), "end_to_end_s": t_empty - t_start,
            "rate_end_to_end": n / (t_empty - t_start), "requests": len(posts),
            "cpu_s": stats["cpu_s"], "vmhwm_kib": stats["VmHWM"],
            "rss_anon_kib": stats.get("RssAnon"), "rss_file_kib": stats.get("RssFile")}


def _drain_with_runjobs_php(ctx, n):
    farm = ctx.farm
    clear_jobs(farm, [BIG])
    farm.push_null_jobs(BIG, n)
    c0 = children_cpu()
    t = time.monotonic()
    farm.run_jobs_php(BIG)
    took = time.monotonic() - t
    if farm.total_jobs(BIG) != 0:
        raise RuntimeError("runJobs.php left jobs behind")
    return {"jobs": n, "drain_s": took, "rate": n / took, "cpu_s": children_cpu() - c0}


def throughput(ctx):
    s = ctx.size
    n = s["tput_jobs"]
    log("throughput: %d NullJobs x %d rounds", n, s["tput_rounds"])
    # Warm-up (opcache, l10n cache, buffer pool), not reported.
    _drain_with_runjobs_php(ctx, 200)
    _drain_with_jobdrainer(ctx, 200, s["tput_maxjobs"][0], "tput-warmup")
    rounds = []
    for r in range(1, s["tput_rounds"] + 1):
        row = {"runjobs_php": _drain_with_runjobs_php(ctx, n)}
        for m in s["tput_maxjobs"]:
            row["jobdrainer_%d" % m] = _drain_with_jobdrainer(ctx, n, m, "tput-%d-%d" % (m, r))
        log("throughput round %d: %s", r, ", ".join(
            "%s %.0f/s" % (k, v["rate"]) for k, v in row.items()))
        rounds.append(row)
    return {"jobs": n, "rounds": rounds, "maxjobs": s["tput_maxjobs"], "loadavg": load_avg()}


# ---- 2. fairness and latency ---------------------------------------------------------------


def probe_schedule(smalls, horizon, mean_interval, seed):
    """Poisson arrivals per small wiki, each event 1-3 probe jobs: [(offset, domain, n)]."""
    rng = random.Random(seed)
    events = []
    for d in smalls:
        t = rng.expovariate(1.0 / mean_interval)
        while t < horizon:
            events.append((t, d, rng.choice((1, 1, 1, 2, 3))))
            t += rng.expovariate(1.0 / mean_interval)
    return sorted(events)


class Pusher(threading.Thread):
    """Inserts the schedule's probe jobs at their times, on a farm handle of its own."""

    def __init__(self, farm_dir, events, t0, window, tag):
        super().__init__(daemon=True)
        self.farm = Farm.load(farm_dir)
        self.events = [e for e in events if e[0] < window]
        self.t0, self.tag = t0, tag
        self.pushed = []   # (domain, t_before, t_after, n)
        self._halt = threading.Event()

    def run(self):
        try:
            for off, d, n in self.events:
                delay = self.t0 + off - time.time()
                if delay > 0 and self._halt.wait(delay):
                    return
                tb = time.time()
                self.farm.insert_probe_jobs(d, n, tag=self.tag)
                self.pushed.append((d, tb, time.time(), n))
        finally:
            if self.farm._conn is not None:
                self.farm._conn.close()

    def stop(self):
        self._halt.set()
        self.join(timeout=30)

    @property
    def total(self):
        return sum(p[3] for p in self.pushed)


def _probe_results(farm, tag, pusher, t_end):
    runs = [r for r in farm.probe_runs() if r.get("tag") == tag]
    lat, by_event = [], {}
    for r in runs:
        lat.append(r["ran"] - r["pushed"])
        by_event[(r["domain"], round(r["pushed"], 3))] = by_event.get(
            (r["domain"], round(r["pushed"], 3)), 0) + 1
    # Unrun probes: censored at the end of the run.
    censored = []
    ran_by_domain = {}
    for r in runs:
        ran_by_domain.setdefault(r["domain"], []).append(r["pushed"])
    for d, tb, ta, n in pusher.pushed:
        got = sum(1 for p in ran_by_domain.get(d, []) if tb - 0.001 <= p <= ta + 0.001)
        for _ in range(max(0, n - got)):
            censored.append(t_end - tb)
    return runs, lat, censored


def latency_summary(lat, censored):
    """Percentiles over every job pushed; a job not run counts as infinitely late (inf),
    and the *_lb figures count it with its age at the end of the run instead: a lower
    bound of the true percentile."""
    allv = list(lat) + [float("inf")] * len(censored)
    lower = list(lat) + list(censored)
    out = {"n": len(allv), "ran": len(lat), "unrun": len(censored),
           "censored_min_age_s": min(censored) if censored else None}
    for p in (50, 90, 99):
        out["p%d" % p] = percentile(allv, p)
        out["p%d_lb" % p] = percentile(lower, p)
    out["max"] = max(allv) if allv else None
    out["max_lb"] = max(lower) if lower else None
    out["mean_ran"] = sum(lat) / len(lat) if lat else None
    return out


def _big_series(samples, backlog, t0):
    """[(t - t0, remaining, jobs run since previous sample)] from Sampler samples; jobs
    created meanwhile (edits) are recognised by MAX(job_id) growing."""
    out, max_id = [], None
    prev = None
    for t, n, mx in samples:
        if prev is None:
            max_id = mx
            out.append((t - t0, n, 0))
        else:
            created = max(0, mx - max_id) if mx > max_id else 0
            max_id = max(max_id, mx)
            ran = max(0, (prev[1] - n) + created)
            out.append((t - t0, n, ran))
        prev = (t, n)
    return out


def _drained_at(series):
    for t, n, _ in series:
        if n == 0:
            return t
    return None


class JobdrainerRunner:
    kind = "jobdrainer"

    def __init__(self, ctx, pods, workers):
        self.ctx, self.npods, self.workers = ctx, pods, workers
        self.name = "jobdrainer"
        self.label = "jobdrainer (%d sidecars x %d workers)" % (pods, workers)
        self.pods = Pods()
        self.lease_stats = None

    def start(self, t0, window):
        ini = self.ctx.ini({"discovery": {"version": VERSION},
                            "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD,
                                        "database": ""},
                            "sidecar": {"workers": self.workers}}, record="fairness")
        for i in range(1, self.npods + 1):
            self.pods.add(Pod(self.ctx.pod_dir("fairness"), "fair-pod%d" % i, ini)).start()
        # Statement mix from the general log, a few seconds in the middle of the window.
        self._glog = threading.Thread(target=self._sample_statements,
                                      args=(t0 + window / 2.0 - self.ctx.size["lease_log_seconds"] / 2.0,),
                                      daemon=True)
        self._glog.start()

    def _sample_statements(self, at):
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        db = DbStats(self.ctx.farm)
        try:
            gl = GeneralLog(db, os.path.join(self.ctx.workdir, "general-fairness.log"))
            with gl:
                time.sleep(self.ctx.size["lease_log_seconds"])
            kinds = {}
            for _tid, _cmd, text in gl.statements():
                k = classify_sidecar_statement(text.strip())
                if k:
                    kinds[k] = kinds.get(k, 0) + 1
            self.lease_stats = {"seconds": gl.seconds, "by_kind": kinds}
        except Exception as e:  # noqa: BLE001 - a missing sample must not lose the run
            self.lease_stats = {"error": str(e)}
        finally:
            db.close()

    def stop(self):
        self.proc = {p.name: p.proc_stats() for p in self.pods.pods}
        self.pods.stop()
        self._glog.join(timeout=60)

    def _empty_after_other(self):
        """Empty batches (none-ready, 0 jobs) that started within 2 s after another pod's
        batch on the same wiki ended: the lease was taken from a stale candidate list."""
        def ts(line):
            t = datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
            return t.replace(tzinfo=datetime.timezone.utc).timestamp()
        rows = []
        for p in self.pods.pods:
            for b in p.batches():
                try:
                    end = ts(b)
                except (KeyError, ValueError):
                    continue
                rows.append((p.name, b.get("wiki"), end - int(b.get("ms", 0)) / 1000.0, end,
                             b.get("reached") == "none-ready" and
                             int(b.get("jobs_ok", 0)) + int(b.get("jobs_failed", 0)) == 0))
        n = 0
        for pod, wiki, start, _end, empty in rows:
            if empty and any(o[0] != pod and o[1] == wiki and 0 <= start - o[3] <= 2.0
                             for o in rows):
                n += 1
        return n

    def extra(self):
        batches = [b for p in self.pods.pods for b in p.batches()]
        by_wiki = {}
        for b in batches:
            by_wiki.setdefault(b.get("wiki"), 0)
            by_wiki[b.get("wiki")] += 1
        lines = [l for p in self.pods.pods for l in p.lines()]
        return {"batches": len(batches),
                "failed_batches": sum(1 for b in batches if b.get("msg") == "batch failed"),
                "small_wiki_batches": sum(1 for b in batches if b.get("wiki") != BIG),
                # A batch that found nothing to run: the lease was taken on a wiki whose
                # backlog was already gone.
                "empty_batches": sum(1 for b in batches if b.get("reached") == "none-ready"
                                     and int(b.get("jobs_ok", 0)) + int(b.get("jobs_failed", 0))
                                     == 0),
                "empty_after_other_pod": self._empty_after_other(),
                "parked": sum(1 for l in lines if str(l.get("msg", "")).startswith("wiki parked")),
                "parked_sample": next((l for l in lines
                                       if str(l.get("msg", "")).startswith("wiki parked")), None),
                "big_wiki_batches": by_wiki.get(BIG, 0),
                "sidecar_cpu_s": sum(s["cpu_s"] for s in self.proc.values() if s),
                "sidecar_vmhwm_kib": max((s["VmHWM"] for s in self.proc.values() if s),
                                         default=None),
                "statement_sample": self.lease_stats,
                "warnings": [l for p in self.pods.pods for l in p.errors()][:20]}


class ShippedRunner:
    kind = "shipped"

    def __init__(self, ctx, interval, limit, startup):
        self.ctx, self.interval, self.limit, self.startup = ctx, interval, limit, startup
        self.name = "shipped-%ds" % interval
        self.label = "shipped approach, poll every %s%s" % (
            "%d min" % (interval // 60) if interval % 60 == 0 else "%d s" % interval,
            ", pod start-up %g s" % startup if startup else "")

    def start(self, t0, window):
        self.poller = baselines.ShippedPoller(self.ctx.farm, self.ctx.fair_domains,
                                              self.interval, self.limit, self.startup,
                                              logdir=self.ctx.pod_dir("shipped")).start()

    def stop(self):
        self.poller.stop()

    def extra(self):
        p = self.poller
        return {"poll_rounds": len(p.rounds), "polls": len(p.polls), "pods": len(p.pods),
                "skipped_limit": sum(1 for x in p.skipped if x[2] == "concurrency limit"),
                "skipped_running": sum(1 for x in p.skipped if x[2] != "concurrency limit"),
                "max_concurrent_pods": _max_concurrent([(x["start"], x["end"] or time.time())
                                                        for x in p.pods]),
                "round_seconds": [b - a for a, b in p.rounds]}


class SerialRunner:
    kind = "serial"

    def __init__(self, ctx):
        self.ctx = ctx
        self.name = "serial-runjobs"
        self.label = "serial runJobs.php loop over all wikis"

    def start(self, t0, window):
        self.loop = baselines.SerialLoop(self.ctx.farm, self.ctx.fair_domains).start()

    def stop(self):
        self.loop.stop()

    def extra(self):
        return {"rounds": self.loop.rounds, "runjobs_processes": len(self.loop.runs)}


class InRequestRunner:
    kind = "inrequest"

    def __init__(self, ctx, rate, edits, reads):
        self.ctx, self.rate, self.edits, self.reads = ctx, rate, edits, reads
        self.name = "in-request"
        self.label = "in-request ($wgJobRunRate = %s), %g edits/s + %g page views/s" % (
            rate, edits, reads)

    def start(self, t0, window):
        self.ctx.farm.set_settings_override("$wgJobRunRate = %s;" % self.rate)
        time.sleep(3)  # opcache revalidation (2 s)
        self.load = baselines.InRequestLoad(self.ctx.farm, [BIG], self.ctx.fair_domains,
                                            self.edits, self.reads).start()

    def stop(self):
        self.load.stop()
        self.ctx.farm.set_settings_override(None)
        time.sleep(3)

    def extra(self):
        reqs = self.load.requests
        return {"requests": self.load.counts(),
                "edit_s_median": median([r[3] for r in reqs if r[0] == "edit"]),
                "read_s_median": median([r[3] for r in reqs if r[0] == "read"])}


def _max_concurrent(intervals):
    ev = sorted([(a, 1) for a, b in intervals] + [(b, -1) for a, b in intervals])
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def _run_fairness_one(ctx, runner, events, window, tail_cap):
    farm, s = ctx.farm, ctx.size
    log("fairness: %s (window %ds, tail <= %ds)", runner.label, window, tail_cap)
    farm.set_settings_override(None)
    reset_coordination(farm)
    clear_jobs(farm, ctx.fair_domains)
    farm.push_null_jobs(BIG, s["fair_backlog"], s["fair_usleep"])
    backlog = farm.total_jobs(BIG)
    tag = "%s-%d" % (runner.name, int(time.time()))
    load0 = load_avg()
    db0 = ctx.db.snapshot()
    apache0 = proc_tree_cpu(farm.path("httpd.conf"))
    child0 = children_cpu()
    t0 = time.time()
    sampler = Sampler(farm, BIG, 1.0)
    sampler.start()
    pusher = Pusher(farm.dir, events, t0, window, tag)
    try:
        runner.start(t0, window)
        pusher.start()
        pusher.join(timeout=window + 60)
        # Tail: until every probe ran and the big wiki is empty, or the cap.
        deadline = t0 + window + tail_cap
        while time.time() < deadline:
            ran = sum(1 for r in farm.probe_runs() if r.get("tag") == tag)
            if ran >= pusher.total and sampler.samples and sampler.samples[-1][1] == 0:
                break
            time.sleep(1.0)
        t_end = time.time()
    finally:
        pusher.stop()
        try:
            runner.stop()
        finally:
            sampler.stop()
    db1 = ctx.db.snapshot()
    apache_cpu = proc_tree_cpu(farm.path("httpd.conf")) - apache0
    child_cpu = children_cpu() - child0
    runs, lat, censored = _probe_results(farm, tag, pusher, t_end)
    series = _big_series(sampler.samples, backlog, t0)
    drained = _drained_at(series)
    # "While the big wiki drains": probes pushed before it was empty.
    limit = t0 + drained if drained is not None else t_end
    lat_during = [r["ran"] - r["pushed"] for r in runs if r["pushed"] < limit]
    cens_during = []
    if drained is None:
        cens_during = censored
    reqs = access_entries_since(farm, t0)
    dbd = DbStats.delta(db0, db1)
    big_run = sum(x[2] for x in series)
    res = {
        "name": runner.name, "label": runner.label, "kind": runner.kind,
        "window_s": window, "run_s": t_end - t0, "tag": tag, "loadavg_before": load0,
        "backlog": backlog, "big_drained_s": drained,
        "big_rate_avg": (backlog / drained) if drained else
        (sum(x[2] for x in series) / series[-1][0] if series and series[-1][0] > 0 else None),
        "big_remaining_end": series[-1][1] if series else None,
        "series": series,
        "probes_pushed": pusher.total, "probe_events": len(pusher.pushed),
        "latency": latency_summary(lat, censored),
        "latency_during_drain": latency_summary(lat_during, cens_during),
        "latencies": sorted(lat), "censored": sorted(censored),
        "probe_runs": [(r["domain"], r["pushed"], r["ran"]) for r in runs],
        "pushed": pusher.pushed,
        "requests": {"total": len(reqs), "runjobs_posts": sum(1 for e in reqs if is_runjobs(e)),
                     "other_sample": [(e["request"][:80], e["user_agent"][:60])
                                      for e in reqs if not is_runjobs(e)][:5]},
        "db": {"mediawiki": user_statements(dbd["users"], is_mediawiki_user),
               "sidecar": user_statements(dbd["users"], lambda u: u == farm_mod.SIDECAR_USER),
               "scan": user_statements(dbd["users"], lambda u: u == SCAN_USER),
               "mysqld_cpu_s": dbd["mysqld_cpu_s"], "questions": dbd["global"]["Questions"],
               "seconds": dbd["seconds"]},
        "cpu": {"apache_s": apache_cpu, "php_cli_s": child_cpu, "mysqld_s": dbd["mysqld_cpu_s"]},
        "big_jobs_run": big_run,
    }
    res.update({"extra": runner.extra()})
    if runner.kind == "jobdrainer":
        res["cpu"]["php_cli_s"] = max(0.0, child_cpu - res["extra"]["sidecar_cpu_s"])
        res["cpu"]["sidecar_s"] = res["extra"]["sidecar_cpu_s"]
    if runner.kind == "shipped":
        res["shipped_detail"] = _shipped_detail(runner.poller, runs)
    log("fairness: %s: probes %d/%d ran, p50 %s p99 %s max %s; big wiki drained at %s",
        runner.name, len(lat), pusher.total, _fmt(res["latency"]["p50"]),
        _fmt(res["latency"]["p99"]), _fmt(res["latency"]["max"]), _fmt(drained))
    return res


def _fmt(v):
    return "-" if v is None else ("inf" if v == float("inf") else "%.1fs" % v)


def _shipped_detail(poller, runs):
    """Per probe job that ran: the pod that ran it and whether that pod was started after
    the job was queued (new_pod: the job waited for a poll, then for the pod); if so, the
    wait (queued -> pod started by a poll) and the service (pod started -> job ran); and
    whether an earlier poll had already seen jobs on that wiki but skipped it."""
    out = []
    for r in runs:
        pod = poller.pod_for(r["domain"], r["ran"])
        new_pod = pod is not None and pod["start"] >= r["pushed"]
        seen = poller.detection_time(r["domain"], r["pushed"])
        if new_pod:
            wait, service = pod["start"] - r["pushed"], r["ran"] - pod["start"]
        else:
            wait, service = 0.0, r["ran"] - r["pushed"]
        out.append({"new_pod": new_pod, "wait_for_poll_s": wait, "service_s": service,
                    "skipped_first": bool(new_pod and seen is not None
                                          and pod["start"] - seen > 1.0)})
    return out


def derive_shipped(measured, interval, seed=7):
    """The shipped approach at a longer poll interval, from a measured run. A job that got
    a new pod waits for the next poll of its wiki (uniform over the interval: polls are
    not aligned with edits), then the service time measured (pod start -> run); a job a
    running pod caught keeps its measured latency. Monte Carlo over the poll phase, 200
    draws per job. Optimistic: it leaves out skips at the pod limit, which cost whole
    intervals."""
    rng = random.Random(seed)
    lat = []
    det = measured["shipped_detail"]
    measured_lat = [ran - pushed for _d, pushed, ran in measured["probe_runs"]]
    for d, m in zip(det, measured_lat):
        for _ in range(200):
            lat.append(rng.uniform(0, interval) + d["service_s"] if d["new_pod"] else m)
    summ = latency_summary(lat, [])
    services = [d["service_s"] for d in det if d["new_pod"]]
    if services:
        summ["max"] = interval + max(services)  # the worst phase
    summ["n"] = summ["ran"] = len(det)
    lat.sort()
    # 500 quantiles are plenty for the CDF plot.
    quantiles = [lat[min(len(lat) - 1, int(i * len(lat) / 500))] for i in range(500)] + \
        ([lat[-1]] if lat else [])
    return {"name": "shipped-%ds-derived" % interval,
            "label": "shipped approach, poll every %d min (derived)" % (interval // 60),
            "kind": "shipped-derived", "interval": interval, "latency": summ,
            "latencies": quantiles, "service_median_s": median(services),
            "from": measured["name"]}


def startup_effect(measured, startups=(5, 10, 30)):
    """Pod start-up delay S adds S to every probe run by a pod started after it was
    queued; probes caught by a pod already running do not pay it. Derived from the
    measured run (start-up 0)."""
    det = measured["shipped_detail"]
    lat_by_probe = [ran - pushed for _d, pushed, ran in measured["probe_runs"]]
    out = []
    for s in startups:
        lat = [l + (s if d["new_pod"] else 0.0) for l, d in zip(lat_by_probe, det)]
        summ = latency_summary(lat, [])
        out.append({"startup_s": s, "p50": summ["p50"], "p99": summ["p99"], "max": summ["max"],
                    "share_new_pod": sum(1 for d in det if d["new_pod"]) / max(1, len(det))})
    return out


def fairness(ctx):
    s = ctx.size
    setup_wikis(ctx)
    horizon = max([s["fair_window"]] + list(s["shipped_intervals"]))
    events = probe_schedule(ctx.smalls, horizon, s["fair_mean_interval"], seed=20240601)
    runners = [(JobdrainerRunner(ctx, s["fair_pods"], s["fair_workers"]), s["fair_window"],
                s["fair_tail"])]
    for iv in s["shipped_intervals"]:
        # The window covers at least one full poll interval, so that probe arrival times
        # are spread over the poll phase.
        runners.append((ShippedRunner(ctx, iv, s["shipped_limit"], ctx.pod_startup),
                        max(s["fair_window"], iv), iv + s["fair_tail"]))
    if s["serial"]:
        runners.append((SerialRunner(ctx), s["fair_window"], s["fair_tail"]))
    runners.append((InRequestRunner(ctx, s["inreq_rate"], s["inreq_edits_per_s"],
                                    s["inreq_reads_per_s"]), s["fair_window"], s["inreq_tail"]))
    results = []
    for runner, window, tail in runners:
        results.append(_run_fairness_one(ctx, runner, events, window, tail))
    derived = []
    for iv in s["shipped_derived"]:
        base = next((r for r in results if r["kind"] == "shipped"), None)
        if base:
            derived.append(derive_shipped(base, iv))
    startup = None
    base = next((r for r in results if r["kind"] == "shipped"), None)
    if base:
        startup = startup_effect(base)
    clear_jobs(ctx.farm, ctx.fair_domains)
    return {"runs": results, "derived": derived, "startup_effect": startup,
            "params": {"backlog": s["fair_backlog"], "usleep": s["fair_usleep"],
                       "small_wikis": len(ctx.smalls), "window_s": s["fair_window"],
                       "mean_interval_s": s["fair_mean_interval"],
                       "events_in_window": sum(1 for e in events if e[0] < s["fair_window"]),
                       "probes_in_window": sum(e[2] for e in events if e[0] < s["fair_window"]),
                       "pod_startup_s": ctx.pod_startup, "shipped_limit": s["shipped_limit"]}}


# ---- 3. idle cost --------------------------------------------------------------------------


def idle(ctx):
    s, farm = ctx.size, ctx.farm
    setup_wikis(ctx)
    n = 0
    while len([w for w in farm.wikis.values() if w.version == VERSION]) < s["idle_wikis"]:
        n += 1
        d = "idle%03d.bench.test" % n
        if d not in farm.wikis:
            farm.add_wiki(d)
    domains = [w.domain for w in sorted(farm.wikis.values(), key=lambda w: w.wiki_id)
               if w.version == VERSION and w.db_exists and not w.deleted]
    clear_jobs(farm, domains)
    reset_coordination(farm)
    farm.set_settings_override(None)
    out = {"wikis": len(domains), "seconds": s["idle_seconds"], "pods": s["idle_pods"]}

    # jobdrainer: 3 sidecars, defaults.
    log("idle: %d sidecars, %d wikis, %ds", s["idle_pods"], len(domains), s["idle_seconds"])
    # log_level debug only adds the per-scan line that counts scans.
    ini = ctx.ini({"discovery": {"version": VERSION}, "sidecar": {"log_level": "debug"},
                   "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""}},
                  record="idle")
    with Pods() as pods:
        t_start = time.time()
        for i in range(1, s["idle_pods"] + 1):
            pods.add(Pod(ctx.pod_dir("idle"), "idle-pod%d" % i, ini)).start()
        # Warm-up: schema, discovery, scanner lease, first scans.
        time.sleep(8)
        cpu0 = {p.name: p.proc_stats().get("cpu_ns", 0) for p in pods.pods}
        db0 = ctx.db.snapshot()
        time.sleep(s["idle_seconds"])
        db1 = ctx.db.snapshot()
        stats = {p.name: p.proc_stats() for p in pods.pods}
        rss_map = bench_common.rss_by_mapping(pods.pods[0].pid, top=12)
        pods.stop()
        t_stop = time.time()
    dbd = DbStats.delta(db0, db1)
    reqs = access_entries_since(farm, t_start)
    sc = user_statements(dbd["users"], lambda u: u == farm_mod.SIDECAR_USER)
    scan = user_statements(dbd["users"], lambda u: u == SCAN_USER)
    root = dbd["users"].get("root", {})
    own = root.get("SELECT_COMMANDS", 0) + root.get("UPDATE_COMMANDS", 0) + \
        root.get("OTHER_COMMANDS", 0)
    secs = dbd["seconds"]
    scans = sum(1 for p in pods.pods for l in p.lines() if l.get("msg") == "scan")
    out["jobdrainer"] = {
        "lifetime_s": t_stop - t_start,
        "requests": len(reqs), "runjobs_posts": sum(1 for e in reqs if is_runjobs(e)),
        "questions_per_s": (dbd["global"]["Questions"] - own) / secs,
        "statements_per_s": (sc["statements"] + scan["statements"]) / secs,
        "coordination_statements_per_s": sc["statements"] / secs,
        "scan_statements_per_s": scan["statements"] / secs,
        "db_busy_s_per_s": (sc["busy_s"] + scan["busy_s"]) / secs,
        "db_cpu_s_per_s": (sc["cpu_s"] + scan["cpu_s"]) / secs,
        "mysqld_cpu_s_per_s": dbd["mysqld_cpu_s"] / secs if dbd["mysqld_cpu_s"] else None,
        "rss_by_mapping": rss_map,
        "sidecars": {name: {"cpu_s_window": (st.get("cpu_ns", 0) - cpu0[name]) / 1e9,
                            "cpu_s_total": st["cpu_s"], "vmhwm_kib": st["VmHWM"],
                            "rss_anon_kib": st.get("RssAnon"), "rss_file_kib": st.get("RssFile"),
                            "threads": st.get("Threads")}
                     for name, st in stats.items()},
        "scans": scans,
    }

    # The shipped poller (HTTP polls only: nothing to run), one poll per round.
    log("idle: shipped poller, one round over %d wikis", len(domains))
    db0 = ctx.db.snapshot()
    ap0 = proc_tree_cpu(farm.path("httpd.conf"))
    t0 = time.time()
    poller = baselines.ShippedPoller(farm, domains, interval=3600, spawn_pods=False).start()
    deadline = time.monotonic() + 300
    while not poller.rounds and time.monotonic() < deadline:
        time.sleep(0.2)
    poller.stop()
    db1 = ctx.db.snapshot()
    dbd = DbStats.delta(db0, db1)
    reqs = [e for e in access_entries_since(farm, t0) if e["user_agent"] == baselines.POLL_UA]
    mw = user_statements(dbd["users"], is_mediawiki_user)
    round_s = poller.rounds[0][1] - poller.rounds[0][0] if poller.rounds else None
    out["shipped_round"] = {
        "requests": len(reqs), "round_s": round_s, "mw_statements": mw["statements"],
        "mw_busy_s": mw["busy_s"], "apache_cpu_s": proc_tree_cpu(farm.path("httpd.conf")) - ap0,
        "mysqld_cpu_s": dbd["mysqld_cpu_s"]}

    # The serial runJobs.php loop: one round over every wiki, nothing to run.
    log("idle: serial runJobs.php loop, one round over %d wikis", len(domains))
    db0 = ctx.db.snapshot()
    c0 = children_cpu()
    loop = baselines.SerialLoop(farm, domains)
    t0 = time.time()
    for d in domains:
        loop.run_once(d)
    took = time.time() - t0
    db1 = ctx.db.snapshot()
    dbd = DbStats.delta(db0, db1)
    mw = user_statements(dbd["users"], is_mediawiki_user)
    out["serial_round"] = {"processes": len(domains), "round_s": took,
                           "cpu_s": children_cpu() - c0, "mw_statements": mw["statements"],
                           "mw_busy_s": mw["busy_s"], "mysqld_cpu_s": dbd["mysqld_cpu_s"]}
    return out


# ---- 4. scan scale -------------------------------------------------------------------------

SCAN_VERSION = "scanbench"


class ScanWikis:
    """Wikis that exist only as a job table and platform rows (no MediaWiki install):
    enough for discovery and the backlog scan, which read nothing else."""

    def __init__(self, farm, server=None, label="sb"):
        """server: the Farm.add_db_server server holding the job tables (None: the main
        one); the platform rows stay on the main server, with the server's address in
        farm_wiki_servers. label: the domains' and databases' prefix (sb00000.scan.test)."""
        self.farm = farm
        self.conn = farm._root_conn()
        self.server = server
        self.label = label
        self.tables_conn = (farm._root_conn(socket=farm.db_server(server).socket)
                            if server else self.conn)
        self.tables = []   # (db, prefix)

    def domain(self, i):
        return "%s%05d.scan.test" % (self.label, i)

    def grow(self, n, with_jobs_every=10, big_rows=0):
        cur = self.conn.cursor()
        tcur = self.tables_conn.cursor()
        while len(self.tables) < n:
            i = len(self.tables)
            h = secrets.token_hex(5)
            db, pre = "mwdb_%s%s" % (self.label, h), "mwt_%s%s" % (self.label, h)
            tcur.execute("CREATE DATABASE `%s` DEFAULT CHARACTER SET binary" % db)
            tcur.execute("CREATE TABLE `%s`.`%s_job` LIKE `%s`.`%s_job`"
                         % (db, pre, farm_mod.TEMPLATE_DB, farm_mod.TEMPLATE_PREFIX))
            cur.execute("INSERT INTO `%s`.wikis (domain, sitename, created_at, updated_at) "
                        "VALUES (%%s, 'scan', NOW(), NOW())" % farm_mod.PLATFORM_DB,
                        (self.domain(i),))
            wid = cur.lastrowid
            if self.server:
                cur.execute("INSERT INTO `%s`.farm_wiki_servers (wiki_id, server) "
                            "VALUES (%%s, %%s)" % farm_mod.PLATFORM_DB,
                            (wid, self.farm.db_server(self.server).address))
            cur.execute("INSERT INTO `%s`.wiki_dbs (name, prefix, user, password, version, "
                        "wiki_id, created_at, updated_at) VALUES (%%s, %%s, 'none', 'none', "
                        "%%s, %%s, NOW(), NOW())" % farm_mod.PLATFORM_DB,
                        (db, pre, SCAN_VERSION, wid))
            cur.execute("INSERT INTO `%s`.wiki_settings (name, value, wiki_id, created_at, "
                        "updated_at) VALUES ('wgSecretKey', %%s, %%s, NOW(), NOW())"
                        % farm_mod.PLATFORM_DB, (secrets.token_hex(32), wid))
            rows = 0
            if i == 0 and big_rows:
                rows = big_rows
            elif with_jobs_every and i % with_jobs_every == 1:
                rows = 20
            if rows:
                # Ready rows of two types, as MediaWiki writes them (job_token '').
                tcur.execute(
                    "INSERT INTO `%s`.`%s_job` (job_cmd, job_namespace, job_title, "
                    "job_timestamp, job_params, job_random, job_sha1) "
                    "SELECT IF(seq %% 2, 'refreshLinks', 'htmlCacheUpdate'), 0, "
                    "CONCAT('Page_', seq), DATE_FORMAT(UTC_TIMESTAMP(), '%%Y%%m%%d%%H%%i%%s'), "
                    "'a:0:{}', seq, LEFT(SHA1(seq), 31) FROM `%s`.seq_1_to_%d" % (db, pre, db, rows))
            self.tables.append((db, pre))
        cur.close()
        tcur.close()

    def close(self):
        if self.tables_conn is not self.conn:
            self.tables_conn.close()
        self.conn.close()


def _scan_measure(ctx, n, scans, interval):
    """One sidecar scanning n wikis: K scans after the first; returns per-scan figures."""
    farm = ctx.farm
    reset_coordination(farm)
    ini = ctx.ini({"sidecar": {"workers": 1, "log_level": "debug"},
                   # No MediaWiki behind these wikis: a closed port; the scan is measured.
                   "mediawiki": {"port": free_port()},
                   "discovery": {"version": SCAN_VERSION, "interval": 3600},
                   "scan": {"interval": interval},
                   "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""}},
                  record="scan")
    with Pods() as pods:
        pod = pods.add(Pod(ctx.pod_dir("scan"), "scan-%d-%d" % (n, int(time.time())), ini)).start()

        def scan_lines():
            return [l for l in pod.lines() if l.get("msg") == "scan"]

        deadline = time.monotonic() + 120 + n / 50
        while not scan_lines():
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("no scan from %s:\n%s" % (pod.name, pod.sc.raw()[-3000:]))
            time.sleep(0.05)
        first = scan_lines()[0]
        db0 = ctx.db.snapshot()
        deadline = time.monotonic() + 60 + scans * (interval + 10 + n / 200)
        while len(scan_lines()) < 1 + scans:
            if time.monotonic() > deadline or not pod.alive():
                raise RuntimeError("scans stalled in %s" % pod.name)
            time.sleep(0.05)
        db1 = ctx.db.snapshot()
        lines = scan_lines()[1:1 + scans]
        stats = pod.proc_stats()
        pod.stop()
    dbd = DbStats.delta(db0, db1)
    k = len(lines)
    scan = user_statements(dbd["users"], lambda u: u == SCAN_USER)
    coord = user_statements(dbd["users"], lambda u: u == farm_mod.SIDECAR_USER)
    g = dbd["global"]
    return {
        "wikis": int(first.get("wikis", n)), "scans": k,
        "first_scan_ms": int(first["ms"]), "with_backlog": int(lines[-1].get("with_backlog", 0)),
        "queries_per_scan": int(lines[-1].get("queries", 0)),
        "scan_ms": [int(l["ms"]) for l in lines], "scan_ms_median": median([int(l["ms"]) for l in lines]),
        "scan_db_busy_ms": 1000 * scan["busy_s"] / k, "scan_db_cpu_ms": 1000 * scan["cpu_s"] / k,
        "scan_statements": scan["statements"] / k, "scan_rows_read": scan["rows_read"] / k,
        "coord_db_busy_ms": 1000 * coord["busy_s"] / k,
        "coord_statements": coord["statements"] / k,
        "questions_per_scan": g["Questions"] / k, "com_select_per_scan": g["Com_select"] / k,
        "table_cache_misses_per_scan": g["Table_open_cache_misses"] / k,
        "buffer_pool_reads_per_scan": g["Innodb_buffer_pool_reads"] / k,
        "opened_table_definitions_per_scan": g["Opened_table_definitions"] / k,
        "mysqld_cpu_ms": 1000 * dbd["mysqld_cpu_s"] / k if dbd["mysqld_cpu_s"] else None,
        "window_s": dbd["seconds"], "sidecar_cpu_s": stats["cpu_s"], "vmhwm_kib": stats["VmHWM"],
    }


def _scan_parts(ctx, tables, group=50, repeat=2):
    """Diagnosis: the scan's three parts (sidecar/scan.c add_wiki_query(): oldest ready job
    per type 'r', MAX(job_id) 'm', stale claims 's'), each run alone over every wiki in
    groups as the sidecar does, as the scan user. A copy of the sidecar's SQL, kept only
    to show where the time goes; the figures above are the sidecar's own."""
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=ctx.farm.mysql_port, user=SCAN_USER,
                           password=SCAN_PASSWORD, autocommit=True)
    stale = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() - 3600))
    parts = {
        "r": lambda i, d, p: ("(SELECT %d, 'r', j.job_timestamp, NULL FROM `%s`.`%sjob` j JOIN "
                              "(SELECT job_cmd, MIN(job_id) AS id FROM `%s`.`%sjob` WHERE "
                              "job_token = '' GROUP BY job_cmd) m ON j.job_id = m.id)"
                              % (i, d, p, d, p)),
        "m": lambda i, d, p: ("(SELECT %d, 'm', NULL, MAX(job_id) FROM `%s`.`%sjob`)"
                              % (i, d, p)),
        "s": lambda i, d, p: ("(SELECT %d, 's', MIN(j.job_timestamp), NULL FROM `%s`.`%sjob` j "
                              "WHERE j.job_cmd IN (SELECT c.job_cmd FROM (SELECT job_cmd, "
                              "MAX(job_token) AS t FROM `%s`.`%sjob` GROUP BY job_cmd) c WHERE "
                              "c.t > '') AND j.job_token > '' AND j.job_token_timestamp < '%s' "
                              "HAVING COUNT(*) > 0)" % (i, d, p, d, p, stale)),
    }
    out = {}
    try:
        for name, mk in parts.items():
            best = None
            for _ in range(repeat):
                t = time.monotonic()
                with conn.cursor() as cur:
                    for a in range(0, len(tables), group):
                        sql = " UNION ALL ".join(mk(i, d, p + "_")
                                                 for i, (d, p) in enumerate(tables[a:a + group]))
                        cur.execute(sql)
                        cur.fetchall()
                took = (time.monotonic() - t) * 1000
                best = took if best is None else min(best, took)
            out[name] = best
    finally:
        conn.close()
    return out


def scan(ctx):
    """Default server settings first, for every wiki count; then MariaDB restarted with
    caches sized for the largest farm (table_open_cache and table_definition_cache are
    dynamic, innodb_open_files is not), to show what limits the scan."""
    s, farm = ctx.size, ctx.farm
    counts = s["scan_counts"]
    sw = ScanWikis(farm)
    variables = dict(ctx.db.sql("SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                                "('table_open_cache', 'table_definition_cache', "
                                "'innodb_open_files', 'open_files_limit', "
                                "'innodb_buffer_pool_size')"))
    out = {"counts": counts, "server_variables": variables, "default": [], "tuned": [],
           "parts": {}, "big_rows": ctx.size["fair_backlog"], "tuned_variables": None,
           "paced": ctx.binary.knows("scan", "queries_per_second")}
    try:
        for n in counts:
            t = time.monotonic()
            sw.grow(n, big_rows=ctx.size["fair_backlog"])
            log("scan: %d wikis (created in %.0fs)", n, time.monotonic() - t)
            out["default"].append(_scan_measure(ctx, n, s["scan_scans"], s["scan_interval"]))
            log("scan: %d wikis: %s ms (DB busy %.0f ms)", n, out["default"][-1]["scan_ms"],
                out["default"][-1]["scan_db_busy_ms"])
        out["parts"]["default"] = _scan_parts(ctx, sw.tables)
        big = [n for n in counts if n * 5 > int(variables["table_open_cache"])]
        if big and hasattr(farm, "restart_mysqld"):
            m = max(counts)
            tuned = ["--table-open-cache=%d" % (m * 6 + 1000),
                     "--table-definition-cache=%d" % (m * 2 + 1000),
                     "--innodb-open-files=%d" % (m * 2 + 1000),
                     "--open-files-limit=%d" % (m * 16 + 10000),
                     "--innodb-buffer-pool-size=1G"]
            log("scan: restarting MariaDB with %s", " ".join(tuned))
            sw.close()
            farm.restart_mysqld(tuned)
            ctx.db.reattach()
            sw.conn = farm._root_conn()
            out["tuned_variables"] = dict(ctx.db.sql(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('table_open_cache', "
                "'table_definition_cache', 'innodb_open_files', 'open_files_limit', "
                "'innodb_buffer_pool_size')"))
            for n in big:
                # The sidecar scans the first n wikis: discovery sees them all, so keep
                # only n in the scope by version.
                _scope_scan_wikis(farm, n)
                out["tuned"].append(_scan_measure(ctx, n, s["scan_scans"], s["scan_interval"]))
                log("scan: %d wikis, caches sized for the farm: %s ms (DB busy %.0f ms)", n,
                    out["tuned"][-1]["scan_ms"], out["tuned"][-1]["scan_db_busy_ms"])
            _scope_scan_wikis(farm, None)
            out["parts"]["tuned"] = _scan_parts(ctx, sw.tables)
    finally:
        sw.close()
    return out


def _scope_scan_wikis(farm, n):
    """Only the first n scan wikis (by id) carry the scan version; None: all of them."""
    q = ("UPDATE `%s`.wiki_dbs d JOIN `%s`.wikis w ON w.id = d.wiki_id SET d.version = "
         "IF(%%s IS NULL OR w.domain < %%s, '%s', '%s-off') WHERE d.version LIKE '%s%%%%'"
         % (farm_mod.PLATFORM_DB, farm_mod.PLATFORM_DB, SCAN_VERSION, SCAN_VERSION,
            SCAN_VERSION))
    farm.sql(q, (n, "sb%05d.scan.test" % (n or 0)))
