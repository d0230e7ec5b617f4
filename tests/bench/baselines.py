"""The approaches jobdrainer is compared with, run for real against the farm.

- ShippedPoller: what Wikibase Cloud shipped (wbstack/api PollForMediaWikiJobsJob and
  ProcessMediaWikiJobsJob), emulated step for step. Every `interval` seconds one poll
  walks all wikis one after another (Wiki::all(), by id) and GETs
  /w/api.php?action=query&meta=siteinfo&siprop=statistics with the wiki's Host header; a
  wiki reporting jobs > 0 gets a "pod" unless `limit` pods are already running (the job
  is then skipped until the next poll, as the Laravel job does) or one runs for that wiki.
  A pod waits `startup` seconds (Kubernetes scheduling + image start; 0 = best case),
  then runs the shipped shell loop verbatim:
      JOBS_TO_GO=1
      while [ "$JOBS_TO_GO" != "0" ]; do
          php runJobs.php --maxjobs 1000; sleep 1
          JOBS_TO_GO=$(php showJobs.php | tr -d '[:space:]')
      done
  PollForMediaWikiJobsJob is ShouldBeUnique: a poll that overruns its interval delays the
  next one rather than overlapping it.
- SerialLoop: one process at a time, `runJobs.php` (no limits) for each wiki in turn,
  forever: the cron loop of single-server farms.
- InRequestLoad: MediaWiki's own $wgJobRunRate under an edit-heavy, read-light load:
  anonymous edits through api.php and page views through index.php at Poisson rates.
  (In MediaWiki 1.39 only index.php requests run jobs at their end; api.php never does.)
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

from bench_common import farm_mod

SHIPPED_LOOP = """JOBS_TO_GO=1
while [ "$JOBS_TO_GO" != "0" ]
do
    echo "Running 1000 jobs"
    php {mw}/maintenance/runJobs.php --maxjobs 1000
    echo Waiting for 1 seconds...
    sleep 1
    JOBS_TO_GO=$(php {mw}/maintenance/showJobs.php | tr -d '[:space:]')
    echo $JOBS_TO_GO jobs to go
done
"""

POLL_PATH = "/w/api.php?action=query&meta=siteinfo&siprop=statistics&format=json"
POLL_UA = "jobdrainer-bench-shipped-poller"
LOAD_UA = "jobdrainer-bench-load"


def _killpg(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class ShippedPoller:
    def __init__(self, farm, domains, interval, limit=16, startup=0.0, logdir=None,
                 spawn_pods=True):
        self.farm, self.domains = farm, list(domains)
        self.interval, self.limit, self.startup = interval, limit, startup
        self.logdir, self.spawn_pods = logdir, spawn_pods
        self.polls = []        # (round, t_request, domain, jobs or None)
        self.rounds = []       # (t_start, t_end)
        self.pods = []         # dicts: domain, start, end, rc
        self.skipped = []      # (t, domain, why)
        self._procs = {}
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self):
        self.t0 = time.time()
        self._thread.start()
        return self

    def _running(self):
        with self._lock:
            for d, (proc, rec) in list(self._procs.items()):
                if proc.poll() is not None:
                    rec["end"], rec["rc"] = time.time(), proc.returncode
                    del self._procs[d]
            return dict(self._procs)

    def _poll_one(self, domain):
        try:
            status, body = self.farm.http("GET", POLL_PATH, domain,
                                          headers={"User-Agent": POLL_UA}, timeout=30)
            if status != 200:
                return None
            return int(json.loads(body)["query"]["statistics"]["jobs"])
        except Exception:  # noqa: BLE001 - a failed poll counts as "no jobs", as in Laravel
            return None

    def _spawn(self, domain):
        env = self.farm.php_env(domain)
        script = ("sleep %s\n" % self.startup if self.startup > 0 else "") + \
            SHIPPED_LOOP.format(mw=farm_mod.MW_DIR)
        out = subprocess.DEVNULL
        if self.logdir:
            out = open(os.path.join(self.logdir, "pod-%s-%d.log" % (domain, len(self.pods))),
                       "ab")
        proc = subprocess.Popen(["bash", "-c", script], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=farm_mod.MW_DIR)
        if out is not subprocess.DEVNULL:
            out.close()
        rec = {"domain": domain, "start": time.time(), "end": None, "rc": None}
        self.pods.append(rec)
        with self._lock:
            self._procs[domain] = (proc, rec)

    def _run(self):
        nxt = time.time()
        rnd = 0
        while not self._halt.is_set():
            t_start = time.time()
            for d in self.domains:
                if self._halt.is_set():
                    break
                t = time.time()
                jobs = self._poll_one(d)
                self.polls.append((rnd, t, d, jobs))
                if not jobs or not self.spawn_pods:
                    continue
                running = self._running()
                if len(running) >= self.limit:
                    self.skipped.append((t, d, "concurrency limit"))
                elif d in running:
                    self.skipped.append((t, d, "pod already running for this wiki"))
                else:
                    self._spawn(d)
            self.rounds.append((t_start, time.time()))
            rnd += 1
            # ShouldBeUnique: the next poll starts at the next tick after this one ended.
            nxt += self.interval
            while nxt < time.time():
                nxt += self.interval
            while not self._halt.is_set() and time.time() < nxt:
                self._halt.wait(min(0.5, max(0.0, nxt - time.time())))
                self._running()

    def stop(self):
        self._halt.set()
        self._thread.join(timeout=120)
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        for proc, rec in procs:
            _killpg(proc)
            rec["end"], rec["rc"] = time.time(), "killed at end of run"

    def detection_time(self, domain, pushed):
        """When a poll first saw jobs on `domain` after `pushed` (None if never)."""
        for rnd, t, d, jobs in self.polls:
            if d == domain and t >= pushed and jobs:
                return t
        return None

    def pod_for(self, domain, t):
        """The pod of `domain` running at time t."""
        for p in self.pods:
            if p["domain"] == domain and p["start"] <= t and (p["end"] is None or t <= p["end"]):
                return p
        return None


class SerialLoop:
    def __init__(self, farm, domains, maxjobs=None):
        self.farm, self.domains, self.maxjobs = farm, list(domains), maxjobs
        self.runs = []   # (domain, start, end)
        self.rounds = 0
        self._halt = threading.Event()
        self._proc = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def run_once(self, domain):
        args = ["php", os.path.join(farm_mod.MW_DIR, "maintenance", "runJobs.php")]
        if self.maxjobs:
            args += ["--maxjobs", str(self.maxjobs)]
        t = time.time()
        self._proc = subprocess.Popen(args, env=self.farm.php_env(domain),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        self._proc.wait()
        self.runs.append((domain, t, time.time()))

    def _run(self):
        while not self._halt.is_set():
            for d in self.domains:
                if self._halt.is_set():
                    return
                self.run_once(d)
            self.rounds += 1

    def stop(self):
        self._halt.set()
        if self._proc is not None and self._proc.poll() is None:
            _killpg(self._proc)
        self._thread.join(timeout=60)


class InRequestLoad:
    """Edits (api.php, anonymous) on `edit_domains` at `edits_per_s` and page views
    (index.php, Main_Page) on `read_domains` at `reads_per_s`, Poisson, seeded."""

    def __init__(self, farm, edit_domains, read_domains, edits_per_s, reads_per_s, seed=1):
        self.farm = farm
        self.edit_domains, self.read_domains = list(edit_domains), list(read_domains)
        self.edits_per_s, self.reads_per_s = edits_per_s, reads_per_s
        self.seed = seed
        self.requests = []   # (kind, domain, start, seconds, status)
        self._halt = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def start(self):
        self.t0 = time.time()
        if self.edits_per_s > 0:
            self._threads.append(threading.Thread(target=self._loop, daemon=True,
                                                  args=("edit", self.edits_per_s, self.seed)))
        if self.reads_per_s > 0:
            self._threads.append(threading.Thread(target=self._loop, daemon=True,
                                                  args=("read", self.reads_per_s,
                                                        self.seed + 1)))
        for t in self._threads:
            t.start()
        return self

    def _request(self, kind, domain, n):
        t = time.time()
        try:
            if kind == "edit":
                body = {"action": "edit", "title": "Bench edit %d" % n,
                        "text": "Edit %d by the benchmark, linking [[Bench target %d]]." % (n, n % 7),
                        "summary": "bench", "token": "+\\", "format": "json"}
                status, _ = self.farm.http("POST", "/w/api.php", domain, body=body,
                                           headers={"User-Agent": LOAD_UA}, timeout=60)
            else:
                status, _ = self.farm.http("GET", "/w/index.php?title=Main_Page", domain,
                                           headers={"User-Agent": LOAD_UA}, timeout=60)
        except Exception:  # noqa: BLE001
            status = None
        with self._lock:
            self.requests.append((kind, domain, t, time.time() - t, status))

    def _loop(self, kind, rate, seed):
        rng = random.Random(seed)
        domains = self.edit_domains if kind == "edit" else self.read_domains
        nxt = time.time()
        n = 0
        while not self._halt.is_set():
            nxt += rng.expovariate(rate)
            delay = nxt - time.time()
            if delay > 0 and self._halt.wait(delay):
                return
            n += 1
            self._request(kind, rng.choice(domains), n)

    def stop(self):
        self._halt.set()
        for t in self._threads:
            t.join(timeout=90)

    def counts(self):
        out = {}
        for kind, _d, _t, _s, status in self.requests:
            k = out.setdefault(kind, {"n": 0, "ok": 0})
            k["n"] += 1
            k["ok"] += status == 200
        return out
