#!/usr/bin/python3
"""Outage recovery with the shipped defaults (a benchmark, not a test).

One sidecar with the binary's default settings drains four healthy wikis beside six
individually broken ones (HTML on a 200, truncated JSON, wrong types, a 500 error page,
a hang, job-limit with no jobs), behind the fault proxy in front of the real Apache.
Then MediaWiki answers 503 to everything for 30 s, 3 min and 10 min (one run each, a
fresh sidecar per run), while 500 more jobs per healthy wiki are queued. Measured, from
the proxy's request log and Apache's access log:
- first success: MediaWiki answering again -> first 200 in Apache's log for a healthy wiki;
- drained: MediaWiki answering again -> every healthy wiki's queue empty;
- requests the pod sent during the outage, and the most in any 5 s window.
Targets (issue 14): first success within 15 s after any outage length; at most one
request per 5 s per pod during the outage.

    /usr/bin/python3 tests/bench/bench_outage.py [--lengths 30,180,600] [--out FILE]
"""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_common import REPO, Binary, Pod, log, new_workdir, sidecar_ini, write_report  # noqa: E402
from faults import FaultProxy  # noqa: E402
from outage import Outage, add_compound_farm, apache_successes  # noqa: E402
from farm import Farm  # noqa: E402
from sidecar import wait_until  # noqa: E402

HEALTHY = ["healthy%d.farm.test" % i for i in range(1, 5)]
JOBS = 500


def one_run(binary, farm, workdir, length):
    proxy = FaultProxy(upstream_port=farm.http_port)
    healthy, broken, faults = add_compound_farm(farm, HEALTHY, 50)
    proxy.faults = faults
    ini, _ = sidecar_ini(binary, farm, {"mediawiki": {"port": proxy.port}})
    pod = Pod(workdir, "outage%d" % length, ini).start()
    try:
        t0 = time.time()
        wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in healthy), timeout=300,
                   what="healthy wikis drained before the outage")
        time.sleep(10)
        outage = Outage(proxy, farm, "503")
        t_begin = outage.begin()
        for d in healthy:
            farm.push_null_jobs(d, JOBS)
        time.sleep(max(0, t_begin + length - time.time()))
        t_end = outage.end()
        wait_until(lambda: apache_successes(farm, healthy, t_end), timeout=600,
                   what="first success")
        first = apache_successes(farm, healthy, t_end)[0] - t_end
        wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in healthy), timeout=900,
                   interval=0.5, what="healthy backlog drained")
        drained = time.time() - t_end
        during = proxy.count(t_begin, t_end)
        peak = max(proxy.count(t, t + 5) for t in
                   [t_begin + i for i in range(int(t_end - t_begin) - 4)] or [t_begin])
        opened = sum(1 for l in pod.lines()
                     if str(l.get("msg", "")).startswith("mediawiki breaker open"))
        broken_after = sum(proxy.count(t_end, time.time(), h) for h in broken)
        log("outage %ds: first success %.1fs, drained %.1fs, %d requests during (peak %d/5s)",
            length, first, drained, during, peak)
        return dict(length=length, first=first, drained=drained, during=during, peak=peak,
                    rate=during / float(t_end - t_begin), opened=opened,
                    broken_after=broken_after, after_s=time.time() - t_end,
                    warmup=t_begin - t0)
    finally:
        pod.stop()
        proxy.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "jobdrainer"))
    ap.add_argument("--lengths", default="30,180,600")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "outage.md"))
    args = ap.parse_args()
    binary = Binary(args.binary)
    workdir = new_workdir("jdoutage-")
    farm = Farm(os.path.join(workdir, "farm"))
    farm.start()
    rows = []
    try:
        for length in [int(x) for x in args.lengths.split(",")]:
            rows.append(one_run(binary, farm, workdir, length))
    finally:
        farm.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = ["# Outage recovery with the shipped defaults", "",
            "`/usr/bin/python3 tests/bench/bench_outage.py --lengths %s` (binary %s), on a "
            "2-core machine shared with other test farms. One sidecar, shipped defaults "
            "(workers 2, backoff_base 5 s, probe_interval_max 10 s, breaker_failures 2); "
            "4 healthy wikis, 6 individually broken ones (HTML on 200, truncated JSON, wrong "
            "types, 500 page, hang, job-limit with no jobs) behind the fault proxy; during "
            "the outage every request gets a 503 and %d jobs are queued on each healthy "
            "wiki." % (args.lengths, binary.version, JOBS), "",
            "| outage | first success after MediaWiki is back | healthy backlog drained | "
            "requests during the outage | per 5 s (mean / peak) | breaker openings | "
            "requests to broken wikis after |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        text.append("| %d s | %.1f s | %.1f s | %d | %.2f / %d | %d | %d in %.0f s |" % (
            r["length"], r["first"], r["drained"], r["during"], r["rate"] * 5, r["peak"],
            r["opened"], r["broken_after"], r["after_s"]))
    text += ["", "Targets: first success within 15 s after any outage length; at most one "
             "request per 5 s per pod during the outage. The first seconds of an outage "
             "include the batches in flight and the ones that gather the evidence (two "
             "healthy wikis failing) before the breaker opens: the peak 5 s window.", ""]
    write_report(args.out, "\n".join(text))


if __name__ == "__main__":
    main()
