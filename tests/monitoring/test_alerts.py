"""conf/prometheus/jobdrainer-alerts.yaml with Debian's real promtool.

`promtool check rules` and `promtool test rules` (conf/prometheus/jobdrainer-alerts.test.yaml:
series that fire and series that do not fire each alert), and every metric the rules
and the Grafana dashboard query is one the sidecar exports (sidecar/metrics.h) or one of
the gauges named in PENDING_METRICS.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/monitoring
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "conf" / "prometheus"
RULES = PROM_DIR / "jobdrainer-alerts.yaml"
RULE_TESTS = PROM_DIR / "jobdrainer-alerts.test.yaml"
DASHBOARD = ROOT / "conf" / "grafana" / "jobdrainer-dashboard.json"
METRICS_H = ROOT / "sidecar" / "metrics.h"
# Fleet gauges being added to the sidecar at the same time as these rules (issue 12,
# finding 1 and the orphaned-claims count): allowed although metrics.h may not list them yet.
PENDING_METRICS = {"jobdrainer_scan_age_seconds", "jobdrainer_orphaned_claims",
                   "jobdrainer_orphaned_claims_oldest_age_seconds"}
PROMQL_WORDS = {"max", "min", "sum", "by", "on", "and", "or", "unless", "increase",
                "rate", "irate", "without", "avg", "count", "topk", "histogram_quantile",
                "le", "time", "vector", "clamp_min", "ignoring", "group_left", "offset",
                "max_over_time", "min_over_time", "avg_over_time", "bool", "abs", "delta",
                "deriv", "changes", "resets", "label_replace", "absent", "scalar"}


def promtool():
    exe = shutil.which("promtool")
    if exe is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "prometheus"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool missing (Debian package prometheus; scripts/install-deps.sh test)")
    return exe


def exported_metrics():
    text = METRICS_H.read_text()
    names = set(re.findall(r'"(jobdrainer_[a-z_]+)"', text))
    assert "jobdrainer_oldest_ready_job_age_seconds" in names
    # A histogram is exported as its _bucket, _sum and _count series only.
    for h in re.findall(r'"(jobdrainer_[a-z_]+)", "histogram"', text):
        names = (names - {h}) | {h + "_bucket", h + "_sum", h + "_count"}
    return names | PENDING_METRICS


def metric_names(expr):
    """Metric names an expression selects: identifiers not PromQL words, labels or
    strings."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|on|without|ignoring|group_left)\s*\([^)]*\)", "", expr)
    return {w for w in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr)
            if w not in PROMQL_WORDS and not w.startswith("$")}


def alert_rules():
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_check_rules():
    r = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout


def test_promtool_test_rules():
    r = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=PROM_DIR,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_each_alert_is_tested_firing_and_not_firing():
    cases = {}
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for c in t.get("alert_rule_test", []):
            cases.setdefault(c["alertname"], set()).add(bool(c.get("exp_alerts")))
    for rule in alert_rules():
        assert cases.get(rule["alert"]) == {True, False}, \
            f"{rule['alert']}: needs a case that fires and one that does not"


def test_rules_query_only_exported_metrics():
    known = exported_metrics()
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']}: unknown metrics {used - known}"


def test_fleet_gauges_take_max_not_sum():
    """Every pod exports the same fleet gauge: a sum would multiply it by the pods."""
    fleet = {"jobdrainer_oldest_ready_job_age_seconds", "jobdrainer_wikis_backed_off",
             "jobdrainer_wikis_parked", "jobdrainer_wikis_with_backlog",
             "jobdrainer_scan_age_seconds", "jobdrainer_orphaned_claims",
             "jobdrainer_orphaned_claims_oldest_age_seconds"}
    for rule in alert_rules():
        for m in metric_names(rule["expr"]) & fleet:
            assert re.search(r"max by \([^)]*\) \(" + m + r"\)", rule["expr"]), \
                f"{rule['alert']}: {m} must be aggregated with max()"


def test_dashboard_parses_and_queries_exported_metrics():
    board = json.loads(DASHBOARD.read_text())
    known = exported_metrics()
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= known, f"unknown metrics {used - known}"
    # The promise's own gauge and the per-pod health are on it.
    assert {"jobdrainer_oldest_ready_job_age_seconds", "jobdrainer_ready",
            "jobdrainer_mediawiki_breaker_open"} <= used
    for e in exprs:
        if metric_names(e) & {"jobdrainer_oldest_ready_job_age_seconds",
                              "jobdrainer_wikis_backed_off", "jobdrainer_wikis_parked"}:
            assert "sum" not in e, f"fleet gauge summed: {e}"
