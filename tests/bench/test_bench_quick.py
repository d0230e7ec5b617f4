"""Keeps the benchmark from rotting: runs tests/bench/run.py at the quick size on a fast
subset of workloads into a temporary directory and checks that it completes and writes
its report. Not a timed test: it asserts nothing about speed.

Slow (a real farm, a minute or two), so it only runs when asked:

    JD_BENCH=1 /usr/bin/python3 -m pytest -v tests/bench/test_bench_quick.py

JD_BENCH_ONLY picks the workloads (default: throughput,idle; "all" for every one);
JOBDRAINER names a built binary (default: run.py builds with make).
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "run.py")

pytestmark = pytest.mark.skipif(os.environ.get("JD_BENCH") != "1",
                                reason="slow benchmark smoke test: set JD_BENCH=1 to run it")

SECTIONS = {
    "throughput": "## 1. Throughput",
    "fairness": "## 2. Fairness and latency",
    "idle": "## 3. Idle cost",
    "scan": "## 4. Scale of the scan",
}
PLOTS = {
    "throughput": ["throughput.png"],
    "fairness": ["fairness_latency_cdf.png", "fairness_big_wiki.png"],
    "idle": [],
    "scan": ["scan_scale.png"],
}


def test_quick_benchmark_completes_and_reports(tmp_path):
    only = os.environ.get("JD_BENCH_ONLY", "throughput,idle")
    if only == "all":
        only = ",".join(SECTIONS)
    out = tmp_path / "results"
    cmd = [sys.executable, RUN, "--size", "quick", "--only", only, "--out", str(out)]
    if os.environ.get("JOBDRAINER"):
        cmd += ["--binary", os.environ["JOBDRAINER"]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, "run.py failed (%d):\n%s\n%s" % (
        r.returncode, r.stdout[-4000:], r.stderr[-8000:])

    report = (out / "REPORT.md").read_text()
    for heading in ["# jobdrainer benchmark", "## Targets", "## Method, limits and caveats",
                    "## Running it"]:
        assert heading in report
    results = json.loads((out / "results.json").read_text())
    assert not results["meta"]["errors"]
    for w in only.split(","):
        assert SECTIONS[w] in report, "section for %s missing" % w
        assert w in results
        for png in PLOTS[w]:
            with open(out / png, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
            assert "](%s)" % png in report
