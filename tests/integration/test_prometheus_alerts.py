"""The alert rules on the real Prometheus (Debian's package), scraping a real sidecar.

A sidecar drains a farm whose MediaWiki port nothing listens on, so a wiki's jobs are
held back: Prometheus, started on loopback, scrapes the sidecar every second and
evaluates conf/prometheus/jobdrainer-alerts.yaml with only thresholds and `for`
shortened (the expressions are the file's own). JobdrainerOldestJobNearPromise must not
fire while the farm has no backlog, and must fire once jobs wait; the breaker alert
fires for that pod.

Run: JOBDRAINER=$PWD/build/jobdrainer /usr/bin/python3 -m pytest -v -p no:cacheprovider \
     tests/integration/test_prometheus_alerts.py
"""
import datetime
import json
import os
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from farm import free_port
from sidecar import REPO, farm_ini, wait_until

RULES = os.path.join(REPO, "conf", "prometheus", "jobdrainer-alerts.yaml")
# Alert -> (threshold in the file, test threshold); `for` becomes 0s for these.
SHORTENED = {"JobdrainerOldestJobNearPromise": ("> 120", "> 3"),
             "JobdrainerMediaWikiBreakerOpen": (None, None)}


def rules_copy(tmp_path):
    """The rules file with the SHORTENED alerts' thresholds and `for` replaced, and
    nothing else changed."""
    doc = yaml.safe_load(open(RULES))
    for rule in doc["groups"][0]["rules"]:
        if rule["alert"] in SHORTENED:
            old, new = SHORTENED[rule["alert"]]
            if old:
                assert rule["expr"].endswith(old), rule["expr"]
                rule["expr"] = rule["expr"][: -len(old)] + new
            rule["for"] = "0s"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def prometheus_binary():
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus missing (Debian package prometheus; scripts/install-deps.sh test)")
    return exe


def api(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return json.load(r)["data"]


def firing(port, name):
    return [a for a in api(port, "/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == "firing"]


@pytest.fixture
def prometheus(tmp_path):
    """Factory: prometheus(target_port, rules) -> the API port of a running Prometheus."""
    procs = []

    def start(target_port, rules):
        port = free_port()
        conf = tmp_path / "prometheus.yml"
        conf.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "jobdrainer", "static_configs": [
                {"targets": ["127.0.0.1:%d" % target_port],
                 "labels": {"namespace": "farm", "pod": "pod-a"}}]}]}))
        log = open(tmp_path / "prometheus.log", "wb")
        procs.append(subprocess.Popen(
            [prometheus_binary(), "--config.file=%s" % conf,
             "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

        def scraped():
            try:
                targets = api(port, "/api/v1/targets")["activeTargets"]
            except OSError:
                return False
            return any(t["health"] == "up" for t in targets)
        wait_until(scraped, timeout=60, what="Prometheus scraping the sidecar")
        return port

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_alert_fires_when_a_wikis_jobs_are_held_back(farm, sidecars, prometheus, tmp_path):
    domain = "wiki1.farm.test"
    assert farm.ready_jobs(domain) == 0
    # MediaWiki "down" for this pod: nothing listens on its [mediawiki] port.
    pod = sidecars("pod-a", farm_ini(farm, mediawiki={"port": free_port()}))
    port = prometheus(pod.http_port, rules_copy(tmp_path))

    def evaluated_with_data():
        groups = api(port, "/api/v1/rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        near = rules["JobdrainerOldestJobNearPromise"]
        assert near["health"] == "ok", near
        q = api(port, "/api/v1/query?query=jobdrainer_oldest_ready_job_age_seconds")
        if not q["result"]:
            return False
        first_sample = min(q["result"][0]["value"][0], first.setdefault("t", 1e18))
        first["t"] = first_sample
        evaluated = datetime.datetime.fromisoformat(near["lastEvaluation"]).timestamp()
        return evaluated > first_sample + 2  # two evaluations on scraped data
    first = {}
    wait_until(evaluated_with_data, timeout=60, what="rules evaluated on scraped data")
    # No backlog: the promise holds, nothing fires.
    assert pod.metrics()["jobdrainer_oldest_ready_job_age_seconds"] == 0
    assert firing(port, "JobdrainerOldestJobNearPromise") == []

    farm.push_null_jobs(domain, 20)
    wait_until(lambda: firing(port, "JobdrainerOldestJobNearPromise"), timeout=90,
               what="JobdrainerOldestJobNearPromise firing")
    alert = firing(port, "JobdrainerOldestJobNearPromise")[0]
    assert alert["labels"]["severity"] == "warning"
    assert (alert["labels"]["job"], alert["labels"]["namespace"]) == ("jobdrainer", "farm")
    assert float(alert["value"]) > 3
    # The jobs were held back, not run.
    assert farm.ready_jobs(domain) == 20
    # The batches were refused; the pod's breaker opened, and that alert fires too.
    wait_until(lambda: firing(port, "JobdrainerMediaWikiBreakerOpen"), timeout=90,
               what="JobdrainerMediaWikiBreakerOpen firing")
    assert firing(port, "JobdrainerMediaWikiBreakerOpen")[0]["labels"]["pod"] == "pod-a"
    # The rest of the rules load and evaluate without errors on real series.
    groups = api(port, "/api/v1/rules")["groups"]
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
