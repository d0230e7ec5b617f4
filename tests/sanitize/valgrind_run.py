#!/usr/bin/python3
"""A short drain under valgrind: the daemon must exit 0 on SIGTERM with no memory errors
and no definitely or indirectly lost blocks.

Starts a farm (tests/farm/farm.py) of two good wikis, one without a database and one
whose MediaWiki has another secret; queues NullJobs; runs the daemon under memcheck with
the INI the integration tests use; polls its HTTP endpoints until the good wikis are
drained and at least --seconds have passed (so discovery, scans, lease renewals and the
bad wikis' error paths go round a few times); sends SIGTERM and reads valgrind's
summary. "Still reachable" and "possibly lost" blocks (libraries' one-time allocations)
are reported but do not fail the run.

  /usr/bin/python3 tests/sanitize/valgrind_run.py [--binary build/jobdrainer]
      [--workdir build/valgrind] [--seconds 20] [--jobs 200]

Exit status: 0 clean, 1 a finding (valgrind log in WORKDIR/valgrind.log)."""

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
import sidecar  # noqa: E402

VALGRIND_ERROR_EXIT = 99
# The daemon's endpoints and the status each answers once running (/readyz may be 503
# while the daemon has not finished its first scan: any answer will do).
ENDPOINTS = {"/healthz": 200, "/readyz": 200, "/metrics": 200, "/no-such-page": 404}
LOST = re.compile(r"(definitely|indirectly|possibly) lost: ([\d,]+) bytes in ([\d,]+) blocks")
ERRORS = re.compile(r"ERROR SUMMARY: ([\d,]+) errors")


def number(text):
    return int(text.replace(",", ""))


def valgrind_summary(path):
    """{"definitely": bytes, ..., "errors": n} from a memcheck log (last summary wins)."""
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LOST.search(line)
            if m:
                out[m.group(1)] = number(m.group(2))
            m = ERRORS.search(line)
            if m:
                out["errors"] = number(m.group(1))
    return out


def drained(farm, domains):
    return all(farm.ready_jobs(d) == 0 for d in domains)


def run(args):
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print("valgrind_run: %s is not built" % binary, file=sys.stderr)
        return 1
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    vg_log = os.path.join(args.workdir, "valgrind.log")
    wrapper = ["valgrind", "--tool=memcheck", "--leak-check=full",
               "--show-leak-kinds=definite,indirect,possible",
               "--errors-for-leak-kinds=definite,indirect",
               "--error-exitcode=%d" % VALGRIND_ERROR_EXIT, "--num-callers=30",
               "--log-file=" + vg_log]

    # Not under WORKDIR: Apache's workers (www-data) must traverse the farm's parents.
    farm_parent = tempfile.mkdtemp(prefix="jdvalgrind-", dir="/tmp")
    os.chmod(farm_parent, 0o755)
    farm = Farm(os.path.join(farm_parent, "farm"))
    pod = None
    t0 = time.monotonic()
    try:
        farm.start(wikis=2)
        good = list(farm.wikis)
        # Two bad wikis keep the error paths busy too: one whose job table cannot be read
        # (scanner), one whose MediaWiki refuses our signature (batch refused, backoff).
        farm.add_wiki("nodb.farm.test", create_db=False)
        farm.add_wiki("wrongsecret.farm.test", mw_secret="f" * 64)
        print("valgrind_run: farm up in %.0fs" % (time.monotonic() - t0), flush=True)
        for domain in good:
            farm.push_null_jobs(domain, args.jobs)
        farm.push_null_jobs("wrongsecret.farm.test", 10)
        ini = sidecar.farm_ini(farm)
        sidecar.BINARY = binary
        pod = sidecar.Sidecar(args.workdir, "vg", ini)
        pod.launch(wrapper)
        started = time.monotonic()
        requests = 0
        # valgrind makes start-up several times slower than the tests allow for.
        pod.wait_for(lambda l: l.get("msg") == "jobdrainer starting", timeout=60)
        # Until drained and at least --seconds: poll the HTTP endpoints now and then, so
        # that libmicrohttpd's threads and the metrics text run under memcheck too.
        while not (drained(farm, good) and time.monotonic() - started >= args.seconds):
            if pod.proc.poll() is not None:
                raise AssertionError("the daemon exited (%s) while draining; log:\n%s"
                                     % (pod.proc.returncode, pod.raw()[-4000:]))
            if time.monotonic() - started > args.timeout:
                raise AssertionError("queues not drained after %ss under valgrind"
                                     % args.timeout)
            for path in ENDPOINTS:
                status, _ = pod.get(path)
                requests += 1
                if status != ENDPOINTS[path] and path != "/readyz":
                    raise AssertionError("GET %s: %s, expected %s"
                                         % (path, status, ENDPOINTS[path]))
            time.sleep(1)
        batches = len(pod.batches())
        print("valgrind_run: drained %d jobs in %d batches, %d HTTP requests; SIGTERM "
              "after %.0fs" % (args.jobs * len(good), batches, requests,
                               time.monotonic() - started),
              flush=True)
        rc = pod.stop(signal.SIGTERM, timeout=120)
    finally:
        if pod is not None:
            pod.kill()
        farm.stop()
        shutil.rmtree(farm_parent, ignore_errors=True)

    summary = valgrind_summary(vg_log)
    print("valgrind_run: exit %s; definitely lost %s B, indirectly lost %s B, possibly "
          "lost %s B; %s errors (log: %s, daemon log: %s)"
          % (rc, summary.get("definitely", 0), summary.get("indirectly", 0),
             summary.get("possibly", 0), summary.get("errors", "?"), vg_log, pod.log_path))
    failed = []
    if rc == VALGRIND_ERROR_EXIT:
        failed.append("valgrind found errors or leaks")
    elif rc != 0:
        failed.append("exit status %s after SIGTERM" % rc)
    if summary.get("definitely", 0) or summary.get("indirectly", 0):
        failed.append("definitely/indirectly lost blocks")
    if "errors" not in summary:
        failed.append("no valgrind summary in the log")
    elif summary["errors"]:
        failed.append("%d memcheck errors" % summary["errors"])
    if failed:
        with open(vg_log, errors="replace") as f:
            sys.stdout.write(f.read()[-20000:])
        print("valgrind_run: FAILED: %s" % "; ".join(failed))
        return 1
    print("valgrind_run: ok (%.0fs in all)" % (time.monotonic() - t0))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "jobdrainer"))
    ap.add_argument("--workdir", default=os.path.join(REPO, "build", "valgrind"))
    ap.add_argument("--seconds", type=float, default=20,
                    help="run at least this long before SIGTERM")
    ap.add_argument("--timeout", type=float, default=180,
                    help="give up waiting for the queues to drain after this long")
    ap.add_argument("--jobs", type=int, default=200, help="NullJobs queued per wiki")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
