"""chart-patch/jobdrainer-sidecar.patch against the real wbstack mediawiki chart.

The patch is applied (git apply and patch -p1) to a copy of the verbatim chart in
/work/shared/fixtures/wbstack-chart, the chart is rendered by tests/chart/render (Go's
text/template + sprig v3 + sigs.k8s.io/yaml, as Helm renders; see chart-patch/README.md)
and the rendered YAML is checked: the sidecar container, its ConfigMap and the INI in it,
which jobdrainer itself must accept (--check-config).

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chart
"""
import configparser
import copy
import hashlib
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = pathlib.Path(os.environ.get("WBSTACK_CHART_FIXTURE",
                                      "/work/shared/fixtures/wbstack-chart"))
PATCH = ROOT / "chart-patch" / "jobdrainer-sidecar.patch"
EXAMPLE = ROOT / "chart-patch" / "values-example.yaml"
RENDER_SRC = ROOT / "tests" / "chart" / "render" / "main.go"
RENDER_BIN = ROOT / "build" / "chart-render"
JOBDRAINER = pathlib.Path(os.environ.get("JOBDRAINER", ROOT / "build" / "jobdrainer"))
CHART = "charts/mediawiki"
DEPLOYMENTS = ("backend", "web", "api", "alpha")
FORBIDDEN_KINDS = {"Job", "CronJob", "Role", "RoleBinding", "ClusterRole",
                   "ClusterRoleBinding", "ServiceAccount"}
# Debian packages the renderer is built from (GOPATH mode, /usr/share/gocode).
GO_PKGS = ["golang-go", "golang-github-masterminds-sprig-dev", "golang-k8s-sigs-yaml-dev"]
GOPATH = "/usr/share/gocode"

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------------------- fixtures

def _go_sources_present():
    return (shutil.which("go") is not None
            and pathlib.Path(GOPATH, "src/github.com/Masterminds/sprig/functions.go").exists()
            and pathlib.Path(GOPATH, "src/sigs.k8s.io/yaml/yaml.go").exists())


@pytest.fixture(scope="session")
def renderer():
    """build/chart-render, built from tests/chart/render when missing or older."""
    if not _go_sources_present():
        if os.geteuid() != 0:
            pytest.skip("Go and sprig are missing and not root to install them: "
                        "apt-get install " + " ".join(GO_PKGS))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + GO_PKGS,
                env=env)
        if r.returncode != 0 or not _go_sources_present():
            pytest.skip("golang-go / sprig not installable from Debian's archive: "
                        + r.stderr[-500:])
    if (not RENDER_BIN.exists()
            or RENDER_BIN.stat().st_mtime < RENDER_SRC.stat().st_mtime):
        RENDER_BIN.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="",
                   CGO_ENABLED="0", GOCACHE=str(ROOT / "build" / "go-cache"))
        r = run(["go", "build", "-o", str(RENDER_BIN), "./tests/chart/render"],
                cwd=ROOT, env=env)
        assert r.returncode == 0, "building the renderer failed:\n" + r.stderr
    return RENDER_BIN


def _copy_fixture(dest):
    shutil.copytree(FIXTURE, dest)
    assert (dest / CHART / "Chart.yaml").exists()
    return dest


@pytest.fixture(scope="session")
def unpatched(tmp_path_factory):
    return _copy_fixture(tmp_path_factory.mktemp("unpatched") / "charts-repo")


@pytest.fixture(scope="session")
def patched(tmp_path_factory):
    """A git clone-alike of the chart repository with the patch applied by git apply."""
    repo = _copy_fixture(tmp_path_factory.mktemp("patched") / "charts-repo")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                 "commit", "-q", "-m", "fixture"]):
        r = run(cmd, cwd=repo)
        assert r.returncode == 0, r.stderr
    r = run(["git", "apply", "--check", str(PATCH)], cwd=repo)
    assert r.returncode == 0, "git apply --check:\n" + r.stderr
    r = run(["git", "apply", str(PATCH)], cwd=repo)
    assert r.returncode == 0, "git apply:\n" + r.stderr
    return repo


class Render:
    def __init__(self, text):
        self.text = text
        self.docs = [d for d in yaml.load_all(text, Loader=Loader) if d]

    def objects(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind, name_suffix):
        found = [d for d in self.objects(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"{kind} *{name_suffix}: {len(found)} found"
        return found[0]

    def deployment(self, which):
        return self.get("Deployment", "-app-" + which)

    def configmap(self):
        return self.get("ConfigMap", "-jobdrainer")

    def ini(self):
        return self.configmap()["data"]["jobdrainer.ini"]


def values_args(tmp_path, *values):
    """-f arguments for values files, and for dicts written to files first."""
    args = []
    for i, v in enumerate(values):
        if isinstance(v, dict):
            f = tmp_path / f"values-{i}.yaml"
            f.write_text(yaml.safe_dump(v))
            v = f
        args += ["-f", str(v)]
    return args


def render_raw(renderer, repo, tmp_path, *values, name="mediawiki-143"):
    return run([str(renderer), "-chart", str(repo / CHART), "-name", name]
               + values_args(tmp_path, *values))


def render(renderer, repo, tmp_path, *values, **kw):
    r = render_raw(renderer, repo, tmp_path, *values, **kw)
    assert r.returncode == 0, "render failed:\n" + r.stderr
    return Render(r.stdout)


def container(deployment, name):
    cs = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return cs[0] if cs else None


def parse_ini(text):
    cp = configparser.ConfigParser(interpolation=None, strict=True,
                                   comment_prefixes=(";", "#"), inline_comment_prefixes=None,
                                   empty_lines_in_values=False)
    cp.read_string(text)
    return cp


def example_values():
    return yaml.safe_load(EXAMPLE.read_text())


def enabled(**over):
    """Minimal values that turn the sidecar on, with overrides merged in."""
    v = {"jobdrainer": {"enabled": True, "image": {"tag": "0.1.0"},
                        "db": {"passwordSecretName": "jobdrainer-db-password"}}}
    def merge(a, b):
        for k, x in b.items():
            if isinstance(x, dict) and isinstance(a.get(k), dict):
                merge(a[k], x)
            else:
                a[k] = x
    merge(v["jobdrainer"], over)
    return v


@pytest.fixture(scope="session")
def example(renderer, patched, tmp_path_factory):
    return render(renderer, patched, tmp_path_factory.mktemp("example"), EXAMPLE)


@pytest.fixture(scope="session")
def base(renderer, unpatched, tmp_path_factory):
    return render(renderer, unpatched, tmp_path_factory.mktemp("base"))


# --------------------------------------------------------------------------- the patch

def test_patch_applies_with_patch_p1(patched, tmp_path):
    repo = _copy_fixture(tmp_path / "charts-repo")
    r = run(["patch", "-p1", "--dry-run", "-i", str(PATCH)], cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(["patch", "-p1", "-s", "-i", str(PATCH)], cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    # Same result as git apply.
    for f in sorted((patched / CHART).rglob("*")):
        if f.is_file():
            rel = f.relative_to(patched)
            assert (repo / rel).read_bytes() == f.read_bytes(), rel


def test_patch_only_touches_the_chart():
    paths = re.findall(r"^diff --git a/(\S+) b/\S+$", PATCH.read_text(), re.M)
    assert paths, "no file in the patch"
    for p in paths:
        assert p.startswith(CHART + "/"), p
    assert f"{CHART}/templates/deployment-backend.yaml" in paths


def test_each_deployment_gains_three_include_lines():
    text = PATCH.read_text()
    for d in DEPLOYMENTS:
        section = text.split(f"b/{CHART}/templates/deployment-{d}.yaml\n", 1)[1].split("diff --git", 1)[0]
        added = [l[1:] for l in section.splitlines()
                 if l.startswith("+") and not l.startswith("+++")]
        removed = [l for l in section.splitlines()
                   if l.startswith("-") and not l.startswith("---")]
        assert removed == []
        assert added == [f'{{{{- include "jobdrainer.{t}" (list . "{d}") }}}}'
                         for t in ("podAnnotations", "container", "podSpec")]


# --------------------------------------------------------------------------- the renderer

def test_renderer_reproduces_helm_number_handling(base):
    # Helm reads values through sigs.k8s.io/yaml, so every number is a float64 and
    # `1234567 | quote` renders in exponent form (helm/helm#1707); a renderer built on
    # another YAML reader would print "1234567".
    env = container(base.deployment("web"), "mediawiki")["env"]
    assert {"name": "MW_MAILGUN_API_KEY", "value": "1.234567e+06"} in env
    assert {"name": "MW_DEFAULT_ELASTICSEARCH_PORT", "value": "9200"} in env


# --------------------------------------------------------------------------- defaults

def test_default_values_render_exactly_the_unpatched_chart(renderer, patched, unpatched,
                                                           tmp_path):
    assert render_raw(renderer, patched, tmp_path).stdout == \
        render_raw(renderer, unpatched, tmp_path).stdout
    r = render(renderer, patched, tmp_path)
    assert not any("jobdrainer" in d["metadata"]["name"] for d in r.docs)


def test_enabled_without_required_values_fails_clearly(renderer, patched, tmp_path):
    r = render_raw(renderer, patched, tmp_path, {"jobdrainer": {"enabled": True}})
    assert r.returncode != 0
    assert "jobdrainer.image.tag is required" in r.stderr or \
        "jobdrainer.db.passwordSecretName is required" in r.stderr


# --------------------------------------------------------------------------- example values

def test_backend_sidecar_container(example):
    dep = example.deployment("backend")
    c = container(dep, "jobdrainer")
    assert c is not None
    assert c["image"] == "ghcr.io/wbstack/jobdrainer:0.1.0"
    assert c["args"] == ["--config", "/etc/jobdrainer/jobdrainer.ini"]
    assert "command" not in c  # the image's ENTRYPOINT is the binary
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container(dep, "mediawiki") is not None
    # The sidecar comes after MediaWiki: the existing container stays first.
    assert dep["spec"]["template"]["spec"]["containers"][0]["name"] == "mediawiki"


def test_password_comes_from_the_secret_named_in_the_ini(example):
    c = container(example.deployment("backend"), "jobdrainer")
    ini = parse_ini(example.ini())
    var = ini["platform_db"]["password_env"]
    env = {e["name"]: e for e in c["env"]}
    assert env[var]["valueFrom"] == {"secretKeyRef": {"name": "jobdrainer-db-password",
                                                      "key": "password"}}
    assert "value" not in env[var]
    for section in ini.sections():
        assert "password" not in ini[section]
        assert "password_file" not in ini[section]


def test_config_mounted_read_only(example):
    dep = example.deployment("backend")
    c = container(dep, "jobdrainer")
    mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/jobdrainer"]
    assert len(mounts) == 1 and mounts[0]["readOnly"] is True
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    cm = vols[mounts[0]["name"]]["configMap"]
    assert cm["name"] == example.configmap()["metadata"]["name"]
    assert "jobdrainer.ini" in example.configmap()["data"]


def test_probes_on_the_http_listen_port(example):
    c = container(example.deployment("backend"), "jobdrainer")
    ports = {p["name"]: p for p in c["ports"]}
    listen = parse_ini(example.ini())["http"]["listen"]
    host, port = listen.rsplit(":", 1)
    assert host == "0.0.0.0"  # the kubelet probes the pod IP
    assert ports["jobdrainer"]["containerPort"] == int(port)
    assert len(ports["jobdrainer"]["name"]) <= 15  # IANA_SVC_NAME
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "jobdrainer"}
    assert "readinessProbe" not in c  # never takes the MediaWiki pod out of service
    mw = container(example.deployment("backend"), "mediawiki")
    assert int(port) not in [p["containerPort"] for p in mw["ports"]]


def test_security_context(example):
    sc = container(example.deployment("backend"), "jobdrainer")["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_resources_follow_values(example):
    res = container(example.deployment("backend"), "jobdrainer")["resources"]
    assert res == {"requests": {"cpu": "20m", "memory": "32Mi"},
                   "limits": {"memory": "96Mi"}}


def test_default_resources_are_small(renderer, patched, tmp_path):
    res = container(render(renderer, patched, tmp_path, enabled()).deployment("backend"),
                    "jobdrainer")["resources"]
    assert res == {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


def test_ini_carries_the_example_limits(example):
    ini = parse_ini(example.ini())
    for section, keys in example_values()["jobdrainer"]["config"].items():
        for key, value in keys.items():
            assert ini[section][key] == str(value), f"[{section}] {key}"
    assert ini["platform_db"]["host"] == "someHostName"  # mw.db.master
    assert ini["scan_db"]["host"] == "someHostName"      # mw.db.replica
    assert ini["platform_db"]["user"] == "jobdrainer"
    assert ini["platform_db"]["database"] == "apidb"
    assert ini["platform_db"]["port"] == "3306"
    assert "holder" not in ini["sidecar"]  # POD_NAME + pid, one per pod
    # No trailing blanks: kubectl then shows the INI as a block, not a quoted string.
    assert not re.search(r"[ \t]$", example.ini(), re.M)


def test_db_hosts_follow_the_chart_mw_db_values(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(),
               {"mw": {"db": {"master": "sql-mariadb-primary.default.svc.cluster.local",
                              "replica": "sql-mariadb-secondary.default.svc.cluster.local"}}})
    ini = parse_ini(r.ini())
    assert ini["platform_db"]["host"] == "sql-mariadb-primary.default.svc.cluster.local"
    assert ini["scan_db"]["host"] == "sql-mariadb-secondary.default.svc.cluster.local"
    env = {e["name"]: e.get("value") for e in
           container(r.deployment("backend"), "mediawiki")["env"]}
    assert env["MW_DB_SERVER_MASTER"] == ini["platform_db"]["host"]
    r = render(renderer, patched, tmp_path, enabled(db={"host": "apidb-host",
                                                        "scanHost": "replica-host"}))
    ini = parse_ini(r.ini())
    assert (ini["platform_db"]["host"], ini["scan_db"]["host"]) == ("apidb-host",
                                                                    "replica-host")


def test_binlog_feed_gets_a_user_of_its_own(renderer, patched, jobdrainer_bin, tmp_path):
    """jobdrainer.binlog.user renders [binlog] user and password_env (its own Secret,
    never the ConfigMap), which turns the feed on ([binlog] enabled = auto); without
    it there is no [binlog] section and no variable, and the feed stays off."""
    r = render(renderer, patched, tmp_path, enabled())
    assert not parse_ini(r.ini()).has_section("binlog")
    env = {e["name"] for e in container(r.deployment("backend"), "jobdrainer")["env"]}
    assert "JOBDRAINER_BINLOG_PASSWORD" not in env
    assert "enabled = false" in assert_accepted(jobdrainer_bin, r.ini(), tmp_path).split(
        "[binlog]")[1]

    r = render(renderer, patched, tmp_path, enabled(binlog={
        "user": "jobdrainer_binlog", "passwordSecretName": "jobdrainer-binlog"}),
        {"mw": {"db": {"replica": "sql-mariadb-secondary"}}})
    ini = parse_ini(r.ini())
    assert dict(ini["binlog"]) == {"user": "jobdrainer_binlog",
                                   "password_env": "JOBDRAINER_BINLOG_PASSWORD"}
    assert ini["scan_db"]["host"] == "sql-mariadb-secondary"  # followed: [binlog] inherits
    env = {e["name"]: e for e in container(r.deployment("backend"), "jobdrainer")["env"]}
    assert env["JOBDRAINER_BINLOG_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "jobdrainer-binlog", "key": "password"}}
    f = tmp_path / "binlog.ini"
    f.write_text(r.ini())
    out = run([str(jobdrainer_bin), "--check-config", "--config", str(f)],
              env=dict(os.environ, JOBDRAINER_DB_PASSWORD="a", JOBDRAINER_BINLOG_PASSWORD="b",
                       POD_NAME="p-0"))
    assert out.returncode == 0, out.stderr
    feed = out.stdout.split("[binlog]")[1]
    assert "enabled = true" in feed and "host = sql-mariadb-secondary" in feed

    r = render(renderer, patched, tmp_path, enabled(binlog={
        "user": "u", "passwordSecretName": "s", "host": "primary-host"}))
    assert parse_ini(r.ini())["binlog"]["host"] == "primary-host"


def test_multiline_query_becomes_continuation_lines(renderer, patched, tmp_path):
    query = ("SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value\n"
             "FROM wikis w\n\n"
             "JOIN wiki_dbs d ON d.wiki_id = w.id\n"
             "LEFT JOIN wiki_settings s ON s.wiki_id = w.id AND s.name = 'wgSecretKey'\n")
    r = render(renderer, patched, tmp_path,
               enabled(config={"discovery": {"query": query}}))
    assert parse_ini(r.ini())["discovery"]["query"] == "\n".join(
        l for l in query.splitlines() if l)
    assert "\n    FROM wikis w\n" in r.ini()


ROLL = {"jobdrainer": {"onConfigChange": "roll"}}


def test_checksum_annotation_follows_the_configmap(renderer, patched, tmp_path):
    """With onConfigChange: roll, the pod template carries the ConfigMap's hash."""
    def checksum(r, which="backend"):
        return r.deployment(which)["spec"]["template"]["metadata"]["annotations"][
            "checksum/jobdrainer-config"]
    ex = example_values()
    ex["jobdrainer"]["onConfigChange"] = "roll"
    rolled = render(renderer, patched, tmp_path, ex)
    c0 = checksum(rolled)
    assert re.fullmatch(r"[0-9a-f]{64}", c0)
    # Same values, same checksum; a change to the INI changes it; a change elsewhere
    # (replicas) does not.
    assert checksum(render(renderer, patched, tmp_path, ex)) == c0
    more = copy.deepcopy(ex)
    more["jobdrainer"]["config"]["mediawiki"]["maxjobs"] = 300
    assert checksum(render(renderer, patched, tmp_path, more)) != c0
    assert checksum(render(renderer, patched, tmp_path, ex,
                           {"replicaCount": {"backend": 3}})) == c0
    # It is the hash of the ConfigMap as Helm's include renders it: the template's own
    # output, whose first and last line breaks `helm template` trims off.
    cm_text = rolled.text.split("# Source: mediawiki/templates/configmap-jobdrainer.yaml\n",
                                 1)[1].split("\n---", 1)[0]
    assert hashlib.sha256(("\n" + cm_text + "\n").encode()).hexdigest() == c0


def test_grace_period_exceeds_shutdown_timeout(example, base):
    spec = example.deployment("backend")["spec"]["template"]["spec"]
    shutdown = int(parse_ini(example.ini())["sidecar"]["shutdown_timeout"])
    assert spec["terminationGracePeriodSeconds"] > shutdown
    assert spec["terminationGracePeriodSeconds"] >= 30  # never below Kubernetes' default
    # The chart sets none of its own, so this does not override anything.
    for d in DEPLOYMENTS:
        assert "terminationGracePeriodSeconds" not in base.deployment(d)["spec"]["template"]["spec"]


def test_grace_period_default_tracks_shutdown_timeout(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(config={"sidecar": {"shutdown_timeout": 50}}))
    assert r.deployment("backend")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] == 60
    r = render(renderer, patched, tmp_path, enabled())
    assert r.deployment("backend")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] == 35


def test_existing_pod_spec_is_untouched(example, base):
    """Take the sidecar's additions out again and the backend equals the unpatched one."""
    dep = copy.deepcopy(example.deployment("backend"))
    pod = dep["spec"]["template"]
    # The default, onConfigChange: reload, adds no annotation; the label is the only
    # change to the pod's metadata.
    assert "annotations" not in pod["metadata"]
    assert pod["metadata"]["labels"].pop("jobdrainer/sidecar") == "true"
    spec = pod["spec"]
    spec["containers"] = [c for c in spec["containers"] if c["name"] != "jobdrainer"]
    assert [v["name"] for v in spec.pop("volumes")] == ["jobdrainer-config"]
    spec.pop("terminationGracePeriodSeconds")
    assert dep == base.deployment("backend")
    # web, api and alpha are not in the example's deployments: unchanged.
    for d in ("web", "api", "alpha"):
        assert example.deployment(d) == base.deployment(d)


def test_example_adds_exactly_one_configmap(example, base):
    names = lambda r: sorted((d["kind"], d["metadata"]["name"]) for d in r.docs)
    added = set(names(example)) - set(names(base))
    assert added == {("ConfigMap", "mediawiki-143-jobdrainer")}
    assert set(names(base)) <= set(names(example))


# --------------------------------------------------------------------------- other deployments

def test_enabled_for_web_too(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(deployments=["backend", "web"]))
    for d in ("backend", "web"):
        dep = r.deployment(d)
        assert container(dep, "jobdrainer") is not None, d
        assert dep["spec"]["template"]["metadata"]["labels"]["jobdrainer/sidecar"] == "true"
    for d in ("api", "alpha"):
        assert container(r.deployment(d), "jobdrainer") is None, d
    assert len(r.objects("ConfigMap")) == 1
    # Both pods mount the same ConfigMap and use the same INI.
    assert (container(r.deployment("web"), "jobdrainer") ==
            container(r.deployment("backend"), "jobdrainer"))


def test_enabled_for_all_four(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(deployments=list(DEPLOYMENTS)))
    for d in DEPLOYMENTS:
        assert container(r.deployment(d), "jobdrainer") is not None, d
        # Existing MediaWiki container untouched in every one of them.
        assert container(r.deployment(d), "mediawiki")["ports"][0]["name"] == "http"


def test_default_sidecar_never_gates_pod_readiness(renderer, patched, tmp_path):
    """A pod is Ready only when all its containers are: by default the sidecar has no
    readiness probe, so its database refusing it never takes MediaWiki out of service."""
    r = render(renderer, patched, tmp_path, enabled(deployments=list(DEPLOYMENTS)))
    for d in DEPLOYMENTS:
        c = container(r.deployment(d), "jobdrainer")
        assert "readinessProbe" not in c, d
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "jobdrainer"}
        # MediaWiki's own container keeps whatever probes the chart gives it.
        assert (container(r.deployment(d), "mediawiki") ==
                container(render(renderer, patched, tmp_path).deployment(d), "mediawiki"))


def test_readiness_probe_is_an_explicit_opt_in(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path,
               enabled(readinessProbe={"enabled": True, "periodSeconds": 7}))
    c = container(r.deployment("backend"), "jobdrainer")
    assert c["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "jobdrainer"},
                                   "periodSeconds": 7, "timeoutSeconds": 3,
                                   "failureThreshold": 3}
    r = render(renderer, patched, tmp_path, enabled(readinessProbe=None, livenessProbe=None))
    c = container(r.deployment("backend"), "jobdrainer")
    assert "readinessProbe" not in c and "livenessProbe" not in c


# --------------------------------------------------------------------------- no new powers

@pytest.mark.parametrize("values", [
    None, "example", {"deployments": list(DEPLOYMENTS)},
], ids=["defaults", "example", "all-deployments"])
def test_no_jobs_rbac_or_service_accounts(renderer, patched, tmp_path, values):
    vals = [] if values is None else [EXAMPLE] if values == "example" else [enabled(**values)]
    r = render(renderer, patched, tmp_path, *vals)
    kinds = {d["kind"] for d in r.docs}
    assert not kinds & FORBIDDEN_KINDS
    assert kinds <= {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler"}
    for d in r.objects("Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert "serviceAccountName" not in spec
        assert "automountServiceAccountToken" not in spec


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("over, message", [
    ({"image": {"tag": ""}}, "jobdrainer.image.tag is required"),
    ({"db": {"passwordSecretName": ""}}, "jobdrainer.db.passwordSecretName is required"),
    ({"config": {"platform_db": {"password": "hunter2"}}}, "never from the ConfigMap"),
    ({"config": {"scan_db": {"password_file": "/x"}}}, "never from the ConfigMap"),
    ({"config": {"sidecar": {"holder": "pod"}}}, "jobdrainer.config.sidecar.holder is set by the chart"),
    ({"config": {"http": {"listen": "0.0.0.0:1"}}}, "jobdrainer.config.http.listen is set by the chart"),
    ({"config": {"platform_db": {"host": "x"}}}, "jobdrainer.config.platform_db.host is set by the chart"),
    ({"deployments": ["backend", "jobs"]}, 'unknown deployment "jobs"'),
    ({"deployments": []}, "jobdrainer.deployments is empty"),
    ({"http": {"port": 80}}, "jobdrainer.http.port: 80"),
    ({"terminationGracePeriodSeconds": 20}, "must be above [sidecar] shutdown_timeout (25)"),
    ({"config": {"drain": {"backoff_max": [1, 2]}}}, "must be a single value"),
    ({"config": {"discovery": {"query": "SELECT 1 ; DROP"}}}, "would be read as a comment"),
    ({"config": {"discovery": {"query": "SELECT " + "x, " * 70 + "y"}}}, "longer than jobdrainer's limit"),
    ({"config": {"drain": 5}}, "jobdrainer.config.drain must be a map"),
    ({"binlog": {"user": "feed"}}, "jobdrainer.binlog.passwordSecretName is required"),
    ({"binlog": {"user": "feed", "passwordSecretName": "s"}, "config": {"binlog": {"user": "x"}}},
     "jobdrainer.config.binlog.user is set by the chart"),
    ({"config": {"binlog": {"password": "hunter2"}}}, "never from the ConfigMap"),
])
def test_refuses_bad_values(renderer, patched, tmp_path, over, message):
    r = render_raw(renderer, patched, tmp_path, enabled(**over))
    assert r.returncode != 0, f"rendered although {over}"
    assert message in r.stderr, r.stderr
    assert "hunter2" not in r.stderr


# --------------------------------------------------------------------------- jobdrainer agrees

@pytest.fixture(scope="session")
def jobdrainer_bin():
    if not JOBDRAINER.exists():
        r = run(["make"], cwd=ROOT)
        if r.returncode != 0 or not JOBDRAINER.exists():
            pytest.skip("build/jobdrainer could not be built (make failed):\n" + r.stderr[-800:])
    return JOBDRAINER


def check_config(binary, ini_text, tmp_path, password):
    f = tmp_path / "jobdrainer.ini"
    f.write_text(ini_text)
    env = dict(os.environ, JOBDRAINER_DB_PASSWORD=password, POD_NAME="mediawiki-143-app-backend-0")
    return run([str(binary), "--check-config", "--config", str(f)], env=env)


def assert_accepted(binary, ini_text, tmp_path):
    """jobdrainer --check-config exits 0 on the rendered INI. A binary older than the
    [http] section is told apart: the rest of the INI must still pass, then skip."""
    secret = "s3cret-not-in-output"
    r = check_config(binary, ini_text, tmp_path, secret)
    if r.returncode != 0:
        errors = [l for l in r.stderr.splitlines() if re.match(r"\S+:\d+: ", l)]
        if errors and all("[http]: unknown section" in l or re.search(r"\[http\] \w+: unknown", l)
                          for l in errors):
            without = re.sub(r"\n\[http\]\n(?:[^\n\[]*\n)*", "\n", ini_text)
            r2 = check_config(binary, without, tmp_path, secret)
            assert r2.returncode == 0, r2.stderr
            assert secret not in r2.stdout + r2.stderr
            pytest.skip(f"{binary} predates the [http] section; the rest of the rendered "
                        "INI passed --check-config")
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    return r.stdout


def test_example_ini_passes_check_config(example, jobdrainer_bin, tmp_path):
    out = assert_accepted(jobdrainer_bin, example.ini(), tmp_path)
    assert "maxjobs = 200" in out
    assert "version = mw1.43-wbs1" in out


def test_multiline_query_passes_check_config(renderer, patched, jobdrainer_bin, tmp_path):
    query = "SELECT w.domain, d.name, CONCAT(d.prefix, '_'), s.value\nFROM wikis w\n" \
            "JOIN wiki_dbs d ON d.wiki_id = w.id\nJOIN wiki_settings s ON s.wiki_id = w.id"
    r = render(renderer, patched, tmp_path, enabled(config={"discovery": {"query": query}}))
    out = assert_accepted(jobdrainer_bin, r.ini(), tmp_path)
    assert "    JOIN wiki_settings s ON s.wiki_id = w.id" in out


def test_default_values_ini_passes_check_config(renderer, patched, jobdrainer_bin, tmp_path):
    r = render(renderer, patched, tmp_path, enabled())
    assert_accepted(jobdrainer_bin, r.ini(), tmp_path)


# --------------------------------------------------------------------------- monitoring objects

ALERT_RULES = ROOT / "conf" / "prometheus" / "jobdrainer-alerts.yaml"


def test_prometheus_rule_and_network_policy_off_by_default(renderer, patched, tmp_path,
                                                             example):
    for r in (render(renderer, patched, tmp_path, enabled()), example):
        kinds = {d["kind"] for d in r.docs}
        assert not kinds & {"PrometheusRule", "NetworkPolicy"}
    # Enabling them without the sidecar renders nothing either.
    r = render(renderer, patched, tmp_path, {"jobdrainer": {
        "prometheusRule": {"enabled": True}, "networkPolicy": {"enabled": True}}})
    assert not {d["kind"] for d in r.docs} & {"PrometheusRule", "NetworkPolicy"}


def test_monitor_off_by_default(renderer, patched, tmp_path, example):
    for r in (render(renderer, patched, tmp_path, enabled()), example,
              render(renderer, patched, tmp_path, {"jobdrainer": {"monitor": {"enabled": True}}})):
        kinds = {d["kind"] for d in r.docs}
        assert not kinds & {"ServiceMonitor", "PodMonitor"}
        assert not [d for d in r.objects("Service") if d["metadata"]["name"].endswith("-jobdrainer")]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitor_with_the_labels_given(renderer, patched, tmp_path):
    """kube-prometheus-stack selects ServiceMonitors by label (Wikibase Cloud: release:
    kube-prometheus-stack): the labels and interval given, on a headless Service that
    selects exactly the pods carrying the sidecar."""
    r = render(renderer, patched, tmp_path, enabled(
        deployments=["backend", "web"],
        monitor={"enabled": True, "labels": {"release": "kube-prometheus-stack", "team": "wbaas"},
                 "interval": "15s", "scrapeTimeout": "5s"}))
    sm = r.get("ServiceMonitor", "-jobdrainer")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == "mediawiki-143-jobdrainer"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["metadata"]["labels"]["team"] == "wbaas"
    assert sm["spec"]["endpoints"] == [
        {"port": "jobdrainer", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}]
    assert not r.objects("PodMonitor")
    services = [s for s in r.objects("Service")
                if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in services] == ["mediawiki-143-jobdrainer"]
    svc = services[0]["spec"]
    assert svc["clusterIP"] == "None"
    assert svc["ports"] == [{"name": "jobdrainer", "port": 9180, "targetPort": "jobdrainer",
                             "protocol": "TCP"}]
    for d in DEPLOYMENTS:
        pod = r.deployment(d)["spec"]["template"]
        assert selects(svc["selector"], pod["metadata"]["labels"]) == (d in ("backend", "web")), d
    # The port the Service names is the sidecar's container port.
    ports = container(r.deployment("backend"), "jobdrainer")["ports"]
    assert [p["name"] for p in ports] == ["jobdrainer"]


def test_service_monitor_defaults(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(monitor={"enabled": True},
                                                    http={"port": 9200}))
    sm = r.get("ServiceMonitor", "-jobdrainer")
    assert sm["spec"]["endpoints"] == [{"port": "jobdrainer", "path": "/metrics",
                                        "interval": "30s"}]
    assert "release" not in sm["metadata"]["labels"]
    assert r.get("Service", "-jobdrainer")["spec"]["ports"][0]["port"] == 9200


def test_pod_monitor(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path, enabled(
        deployments=["web"], monitor={"enabled": True, "kind": "PodMonitor",
                                      "labels": {"release": "kube-prometheus-stack"},
                                      "interval": "1m"}))
    pm = r.get("PodMonitor", "-jobdrainer")
    assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert pm["spec"]["podMetricsEndpoints"] == [
        {"port": "jobdrainer", "path": "/metrics", "interval": "1m"}]
    for d in DEPLOYMENTS:
        labels = r.deployment(d)["spec"]["template"]["metadata"]["labels"]
        assert selects(pm["spec"]["selector"]["matchLabels"], labels) == (d == "web"), d
    # No Service: a PodMonitor finds the pods itself.
    assert not r.objects("ServiceMonitor")
    assert not [s for s in r.objects("Service") if s["metadata"]["name"].endswith("-jobdrainer")]
    bad = render_raw(renderer, patched, tmp_path,
                     enabled(monitor={"enabled": True, "kind": "Monitor"}))
    assert bad.returncode != 0
    assert 'jobdrainer.monitor.kind must be ServiceMonitor or PodMonitor, not "Monitor"' in bad.stderr


def test_prometheus_rule_carries_the_alert_rules_file(renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path,
               enabled(prometheusRule={"enabled": True, "labels": {"release": "kps"}}))
    rule = r.get("PrometheusRule", "-jobdrainer")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    # Prometheus' own {{ $value }} templates reach the object unexpanded.
    assert rule["spec"] == yaml.safe_load(ALERT_RULES.read_text())


def test_network_policy_admits_only_prometheus_and_nodes_to_the_sidecar_port(
        renderer, patched, tmp_path):
    r = render(renderer, patched, tmp_path,
               enabled(deployments=["backend", "web"],
                       networkPolicy={"enabled": True, "nodeCIDRs": ["10.128.0.0/20"]}))
    pol = r.get("NetworkPolicy", "-jobdrainer")["spec"]
    assert pol["policyTypes"] == ["Ingress"]
    # It selects exactly the pods of the deployments carrying the sidecar.
    for d in ("backend", "web", "api", "alpha"):
        labels = r.deployment(d)["spec"]["template"]["metadata"]["labels"]
        selected = (all(labels.get(k) == v for k, v in pol["podSelector"]["matchLabels"].items())
                    and all(labels.get(e["key"]) in e["values"]
                            for e in pol["podSelector"]["matchExpressions"]))
        assert selected == (d in ("backend", "web")), d
    by_port = {rule["ports"][0]["port"]: rule for rule in pol["ingress"]}
    assert set(by_port) == {"http", "jobdrainer"}
    # MediaWiki stays reachable from anywhere; its named port exists in the pod.
    assert "from" not in by_port["http"]
    mw_ports = {p["name"] for p in container(r.deployment("backend"), "mediawiki")["ports"]}
    assert mw_ports == {"http"}
    assert by_port["jobdrainer"]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        {"ipBlock": {"cidr": "10.128.0.0/20"}}]


def test_network_policy_refuses_to_admit_nobody(renderer, patched, tmp_path):
    r = render_raw(renderer, patched, tmp_path,
                   enabled(networkPolicy={"enabled": True, "prometheus": None}))
    assert r.returncode != 0
    assert "jobdrainer.networkPolicy: set prometheus" in r.stderr


def test_on_config_change_reload_keeps_the_pods(renderer, patched, tmp_path, example):
    """onConfigChange: reload, the default, leaves the pod template alone on an INI change
    (no checksum annotation, on any deployment): the kubelet updates the mounted
    directory in place and the sidecar re-reads it. roll keeps the checksum."""
    def annotations(r, which="backend"):
        return r.deployment(which)["spec"]["template"]["metadata"].get("annotations") or {}
    everywhere = list(DEPLOYMENTS)
    for r in (example, render(renderer, patched, tmp_path, enabled(deployments=everywhere))):
        for d in everywhere if r is not example else ["backend"]:
            assert not any(k.startswith("checksum/") for k in annotations(r, d)), d
    roll = render(renderer, patched, tmp_path, enabled(onConfigChange="roll"))
    assert "checksum/jobdrainer-config" in annotations(roll)
    reload = render(renderer, patched, tmp_path, enabled(onConfigChange="reload"))
    assert annotations(reload) == {}
    assert reload.text == render(renderer, patched, tmp_path, enabled()).text
    more = render(renderer, patched, tmp_path,
                  enabled(onConfigChange="reload", config={"mediawiki": {"maxjobs": 300}}))
    assert more.deployment("backend")["spec"]["template"] == \
        reload.deployment("backend")["spec"]["template"]
    # Updated in place only as a directory mount: a subPath mount never changes.
    mounts = container(reload.deployment("backend"), "jobdrainer")["volumeMounts"]
    assert mounts and all("subPath" not in m for m in mounts)
    r = render_raw(renderer, patched, tmp_path, enabled(onConfigChange="restart"))
    assert r.returncode != 0
    assert 'jobdrainer.onConfigChange must be roll or reload, not "restart"' in r.stderr
