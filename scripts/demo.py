#!/usr/bin/python3
"""make demo: a private MariaDB + MediaWiki farm on loopback, drained by two sidecars.

Starts the farm (tests/farm/farm.py) with a few wbaas-style wikis, queues backlogs of
different sizes (bulk NullJobs and real edits that queue refreshLinks jobs), runs two
jobdrainer processes as two "pods", prints their log lines as they come, and stops
everything it started once every queue is empty (or after --timeout seconds).

    /usr/bin/python3 scripts/demo.py [--wikis 4] [--keep DIR] [--timeout 300]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from farm import Farm  # noqa: E402
from sidecar import Sidecar, farm_ini  # noqa: E402


def say(text):
    print("\033[1m== %s\033[0m" % text if sys.stdout.isatty() else "== " + text, flush=True)


def follow(pods, offsets):
    """Prints new log lines of each pod, prefixed with its name."""
    for pod in pods:
        with open(pod.log_path, "rb") as f:
            f.seek(offsets.get(pod.name, 0))
            data = f.read()
            offsets[pod.name] = f.tell()
        for line in data.decode("utf-8", "replace").splitlines():
            print("%-6s| %s" % (pod.name, line), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wikis", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--keep", metavar="DIR", help="keep the farm directory here")
    args = ap.parse_args()

    workdir = args.keep or tempfile.mkdtemp(prefix="jobdrainer-demo-", dir="/tmp")
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)  # Apache's workers (www-data) read the farm below it
    farm = Farm(os.path.join(workdir, "farm"))
    pods = []
    try:
        say("starting MariaDB and Apache + MediaWiki on loopback, %d wikis" % args.wikis)
        farm.start(wikis=args.wikis)
        say("MariaDB on 127.0.0.1:%d, MediaWiki on 127.0.0.1:%d"
            % (farm.mysql_port, farm.http_port))
        domains = sorted(farm.wikis)
        for i, domain in enumerate(domains):
            n = 2000 if i == 0 else 100 * (i + 1)
            farm.push_null_jobs(domain, n)
            farm.make_link_jobs(domain, pages=3)
        say("backlogs queued: " + ", ".join("%s=%d" % (d, farm.ready_jobs(d)) for d in domains))

        for name in ("pod-a", "pod-b"):
            ini = farm_ini(farm, sidecar={"log_format": "text", "log_level": "info", "workers": 2})
            pods.append(Sidecar(os.path.join(workdir, "pods"), name, ini).start())
        say("two sidecars running (pod-a, pod-b); their logs:")

        offsets = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            follow(pods, offsets)
            if all(farm.ready_jobs(d) == 0 for d in domains):
                break
            time.sleep(0.5)
        time.sleep(1)
        follow(pods, offsets)
        left = {d: farm.ready_jobs(d) for d in domains}
        for pod in pods:
            pod.stop()
        follow(pods, offsets)
        if any(left.values()):
            say("NOT drained within %ds: %s" % (args.timeout, left))
            return 1
        say("every queue drained: " + ", ".join("%s=0" % d for d in domains))
        return 0
    finally:
        for pod in pods:
            pod.kill()
        farm.stop()
        say("stopped everything the demo started")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
