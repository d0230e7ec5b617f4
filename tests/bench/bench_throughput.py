#!/usr/bin/python3
"""Throughput: jobdrainer (one worker) vs maintenance/runJobs.php on the same farm.

Drains N jobs on one wiki, alternately with each runner, several rounds, in the same
run on the same real farm (MariaDB + Apache/mod_php + Debian MediaWiki). Reports jobs/s
for each, the ratio, and jobdrainer's peak RSS (VmHWM). A benchmark, not a test: it
asserts nothing about speed.

    /usr/bin/python3 tests/bench/bench_throughput.py [--jobs 5000] [--rounds 3]
        [--maxjobs 100,1000] [--out tests/bench/results/throughput.md]

--defaults: the shipped [mediawiki] and [drain] settings (maxjobs, maxjobs_alone,
maxtime, batches_per_second, time_slice) instead of the fixed maxjobs list; --binary
NAME=PATH (repeatable) compares builds in the same rounds (e.g. before and after a
change); --job-types null,row: NullJobs, and jobs that each INSERT one row into a table
of the wiki's database (benchRow, defined here through the farm's settings override).
"""

import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
from bench_common import new_workdir, write_report  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402

WIKI = "bench1.farm.test"
STARTUP = []   # seconds from starting a sidecar to its first RunJobs request

# A job that writes one row, as most real jobs write something (NullJob writes nothing).
ROW_JOB_PHP = r"""
if ( !class_exists( 'BenchRowJob', false ) ) {
	class BenchRowJob extends Job implements GenericParameterJob {
		public function __construct( array $params ) {
			parent::__construct( 'benchRow', $params );
			$this->removeDuplicates = false;
		}

		public function run() {
			$dbw = MediaWiki\MediaWikiServices::getInstance()->getDBLoadBalancerFactory()
				->getMainLB()->getConnection( DB_PRIMARY );
			$dbw->insert( 'bench_row', [ 'br_ran' => microtime( true ) ], __METHOD__ );
			return true;
		}
	}
}
$wgJobClasses['benchRow'] = BenchRowJob::class;
"""


class BenchSidecar(Sidecar):
    """A sidecar running a given binary (to compare builds in the same rounds)."""

    def __init__(self, binary, *a, **kw):
        super().__init__(*a, **kw)
        self.binary = binary

    def command(self):
        return [self.binary, "--config", self.ini]


def push_jobs(farm, n, job_type):
    if job_type == "null":
        farm.push_null_jobs(WIKI, n)
    else:
        # Straight into the job table, as JobQueueDB stores them (pushing through PHP
        # would take longer than running them).
        farm._insert_job_rows(WIKI, "benchRow", [b"a:0:{}"] * n, time.time())


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_jobdrainer(farm, workdir, n, maxjobs, rnd, binary=None, job_type="null", tag=""):
    push_jobs(farm, n, job_type)
    if maxjobs is None:
        # The shipped defaults for everything that shapes a drain; only the connection,
        # one worker, JSON logs and a quick first scan are set.
        ini = farm_ini(farm, sidecar={"workers": 1, "log_format": "json"},
                       mediawiki={"maxjobs": None, "maxtime": None}, scan={"interval": 1},
                       drain={"time_slice": None, "backoff_base": None, "backoff_max": None})
    else:
        ini = farm_ini(farm, sidecar={"workers": 1, "log_format": "json"},
                       mediawiki={"maxjobs": maxjobs, "maxtime": 25},
                       coordination={"lease_ttl": 90}, scan={"interval": 1},
                       drain={"batches_per_second": 0})
    name = "bench-%s%s-%s-%d" % (tag, job_type, maxjobs or "def", rnd)
    if binary:
        pod = BenchSidecar(binary, workdir, name, ini)
    else:
        pod = Sidecar(workdir, name, ini)
    t0 = time.time()
    pod.start()
    wait_until(lambda: farm.total_jobs(WIKI) == 0, timeout=600, interval=0.02,
               what="jobdrainer drained")
    t_end = time.time()
    # Timed from the first RunJobs request Apache saw (like runJobs.php, which is timed
    # from its own start): the sidecar's start-up (discovery, schema, first scan) is
    # reported separately.
    first = min(e["start"] for e in farm.access_log_entries()
                if "jobdrainer_holder=%s" % name in e["request"])
    took = t_end - first
    STARTUP.append(first - t0)
    rss = vm_hwm_kib(pod.pid)
    pod.stop()
    batches = pod.batches()
    ok = sum(b.get("jobs_ok", 0) for b in batches)
    if ok != n:
        raise SystemExit("jobdrainer ran %d jobs, expected %d" % (ok, n))
    BATCHES.append(len(batches))
    return n / took, rss


BATCHES = []


def run_runjobs_php(farm, n, job_type="null"):
    push_jobs(farm, n, job_type)
    t0 = time.monotonic()
    farm.run_jobs_php(WIKI)
    took = time.monotonic() - t0
    if farm.total_jobs(WIKI) != 0:
        raise SystemExit("runJobs.php left jobs behind")
    return n / took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--maxjobs", default="100,1000")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "throughput.md"))
    ap.add_argument("--defaults", action="store_true",
                    help="shipped settings; compare --binary builds on --job-types")
    ap.add_argument("--binary", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--job-types", default="null,row")
    args = ap.parse_args()
    if args.defaults:
        return main_defaults(args)
    sizes = [int(x) for x in args.maxjobs.split(",")]

    workdir = new_workdir("jdbench-")
    farm = Farm(os.path.join(workdir, "farm"))
    try:
        farm.start()
        farm.add_wiki(WIKI)
        # Warm up both paths once (PHP opcache, l10n cache, MariaDB buffer pool).
        run_runjobs_php(farm, 200)
        run_jobdrainer(farm, workdir, 200, sizes[0], 0)
        php, jd, rss = [], {m: [] for m in sizes}, []
        for rnd in range(1, args.rounds + 1):
            php.append(run_runjobs_php(farm, args.jobs))
            for m in sizes:
                rate, peak = run_jobdrainer(farm, workdir, args.jobs, m, rnd)
                jd[m].append(rate)
                rss.append(peak)
            print("round %d: runJobs.php %.0f jobs/s; %s" % (
                rnd, php[-1], ", ".join("jobdrainer maxjobs=%d %.0f jobs/s" % (m, jd[m][-1])
                                        for m in sizes)), flush=True)
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    php_med = statistics.median(php)
    lines = [
        "# Throughput: jobdrainer vs runJobs.php",
        "",
        "%d NullJobs on one wiki, %d rounds alternating runners, same farm, same run "
        "(`%s`). Median jobs/s; ratio = jobdrainer / runJobs.php." % (
            args.jobs, args.rounds, "make bench"),
        "",
        "| runner | jobs/s (median) | all rounds | ratio |",
        "|---|---|---|---|",
        "| runJobs.php | %.0f | %s | 1.00 |" % (php_med, ", ".join("%.0f" % x for x in php)),
    ]
    for m in sizes:
        med = statistics.median(jd[m])
        lines.append("| jobdrainer, 1 worker, maxjobs=%d | %.0f | %s | %.2f |" % (
            m, med, ", ".join("%.0f" % x for x in jd[m]), med / php_med))
    lines += ["", "jobdrainer is timed from its first RunJobs request to an empty queue; "
              "from process start to that first request took %.2f s (median; discovery, "
              "schema check, first scan)." % statistics.median(STARTUP),
              "Rate limit off (`batches_per_second = 0`); the default, 10 batches/s, would "
              "cap maxjobs=100 at 1,000 jobs/s.", "",
              "jobdrainer peak RSS (VmHWM): max %.1f MiB over %d runs." % (
                  max(rss) / 1024.0, len(rss)), ""]
    report = "\n".join(lines)
    write_report(args.out, report)


def main_defaults(args):
    """At the shipped defaults: per job type, rounds of runJobs.php then each binary."""
    binaries = [b.split("=", 1) for b in args.binary] or [("jobdrainer", None)]
    types = [t.strip() for t in args.job_types.split(",") if t.strip()]
    workdir = new_workdir("jdbench-")
    farm = Farm(os.path.join(workdir, "farm"))
    php = {t: [] for t in types}
    jd = {(t, name): [] for t in types for name, _ in binaries}
    nbatches = {(t, name): [] for t in types for name, _ in binaries}
    try:
        farm.start()
        farm.add_wiki(WIKI)
        farm.sql("CREATE TABLE %s (br_id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, "
                 "br_ran DOUBLE NOT NULL) ENGINE=InnoDB" % farm.wiki(WIKI).table("bench_row"))
        farm.set_settings_override(ROW_JOB_PHP)
        time.sleep(2.5)  # Apache's opcache revalidates every 2 s
        for t in types:
            run_runjobs_php(farm, 200, t)
            for name, path in binaries:
                run_jobdrainer(farm, workdir, 200, None, 0, path, t, name + "-")
        for rnd in range(1, args.rounds + 1):
            for t in types:
                php[t].append(run_runjobs_php(farm, args.jobs, t))
                # Builds take turns going first, so neither always follows runJobs.php.
                for name, path in (binaries if rnd % 2 else binaries[::-1]):
                    rate, _ = run_jobdrainer(farm, workdir, args.jobs, None, rnd, path, t,
                                             name + "-")
                    jd[(t, name)].append(rate)
                    nbatches[(t, name)].append(BATCHES[-1])
                print("round %d %s: runJobs.php %.0f/s; %s" % (
                    rnd, t, php[t][-1], ", ".join("%s %.0f/s (%.2fx, %d batches)" % (
                        name, jd[(t, name)][-1], jd[(t, name)][-1] / php[t][-1],
                        nbatches[(t, name)][-1]) for name, _ in binaries)), flush=True)
        rows = farm.sql("SELECT COUNT(*) FROM %s" % farm.wiki(WIKI).table("bench_row"))
        print("bench_row rows written: %d" % rows[0][0], flush=True)
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| jobs | runner | jobs/s per round | ratio per round (same round's runJobs.php) "
             "| median ratio | batches per drain |", "|---|---|---|---|---|---|"]
    for t in types:
        lines.append("| %s | runJobs.php | %s | 1.00 | 1.00 | 1 process |" % (
            t, ", ".join("%.0f" % x for x in php[t])))
        for name, _ in binaries:
            ratios = [a / b for a, b in zip(jd[(t, name)], php[t])]
            lines.append("| %s | %s | %s | %s | %.2f | %s |" % (
                t, name, ", ".join("%.0f" % x for x in jd[(t, name)]),
                ", ".join("%.2f" % x for x in ratios), statistics.median(ratios),
                ", ".join(str(x) for x in nbatches[(t, name)])))
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
