"""Static checks of the Dockerfile against the host build, in make test (no podman needed).

The image itself is built and run by make image-test (test_image.py: podman with runc,
a local debuerreotype base, the container draining the test farm as PID 1, non-root, on
a read-only root filesystem). These checks run without it, on every make test: the
Dockerfile is parsed and checked against what it ships: every shared library the
built binary loads must come from a package the runtime stage installs (directly for the
binary's own NEEDED entries, or through their Depends), the build stage must build the
way CI builds, the image's user must be the uid the chart runs it as, and the binary must
behave as the image runs it: as PID 1, as that uid, stopping cleanly on SIGTERM.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/docker
"""
import json
import os
import pathlib
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
JOBDRAINER = pathlib.Path(os.environ.get("JOBDRAINER", ROOT / "build" / "jobdrainer"))
DEFAULT_INI = ROOT / "conf" / "jobdrainer.ini"
PATCH = ROOT / "chart-patch" / "jobdrainer-sidecar.patch"
FIXTURE = pathlib.Path(os.environ.get("WBSTACK_CHART_FIXTURE",
                                      "/work/shared/fixtures/wbstack-chart"))


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------------------- Dockerfile parsing

class Stage:
    def __init__(self, image, name):
        self.image, self.name, self.instructions = image, name, []

    def all(self, instr):
        return [args for i, args in self.instructions if i == instr]

    def one(self, instr):
        found = self.all(instr)
        assert len(found) == 1, f"{instr}: {len(found)} in stage {self.name or self.image}"
        return found[0]

    def run_commands(self):
        """Every shell command of every RUN, split on && and ;."""
        cmds = []
        for args in self.all("RUN"):
            for part in re.split(r"&&|;", args):
                if part.strip():
                    cmds.append(shlex.split(part, comments=True))
        return cmds


def parse_dockerfile(text):
    """Stages of a Dockerfile: comments dropped, continuation lines joined."""
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    stages = []
    for line in logical:
        instr, _, args = line.strip().partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert m, line
            stages.append(Stage(m.group(1), m.group(2)))
        else:
            assert stages, f"{instr} before FROM"
            stages[-1].instructions.append((instr, args))
    return stages


def exec_form(args):
    v = json.loads(args)
    assert isinstance(v, list) and all(isinstance(x, str) for x in v), args
    return v


@pytest.fixture(scope="module")
def stages():
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def build_stage(stages):
    return stages[0]


@pytest.fixture(scope="module")
def runtime(stages):
    return stages[-1]


def apt_installed(stage):
    """Packages of `apt-get install` in the stage's RUN commands."""
    pkgs = []
    for cmd in stage.run_commands():
        if cmd[:2] == ["apt-get", "install"]:
            pkgs += [a for a in cmd[2:] if not a.startswith("-")]
    return pkgs


@pytest.fixture(scope="module")
def runtime_pkgs(runtime):
    pkgs = apt_installed(runtime)
    assert pkgs, "the runtime stage installs no package"
    return pkgs


@pytest.fixture(scope="module")
def binary():
    if not JOBDRAINER.exists():
        r = run(["make"], cwd=ROOT)
        if r.returncode != 0 or not JOBDRAINER.exists():
            pytest.skip("build/jobdrainer could not be built (make failed):\n" + r.stderr[-800:])
    return JOBDRAINER


@pytest.fixture(scope="module")
def chart_values(tmp_path_factory):
    """values.yaml of the mediawiki chart with chart-patch applied."""
    repo = tmp_path_factory.mktemp("chart") / "repo"
    shutil.copytree(FIXTURE, repo)
    r = run(["patch", "-p1", "-s", "-i", str(PATCH)], cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    return yaml.safe_load((repo / "charts/mediawiki/values.yaml").read_text())


# --------------------------------------------------------------------------- shape

def test_two_stages_on_bookworm_slim(stages):
    assert len(stages) == 2
    assert [s.image for s in stages] == ["debian:bookworm-slim"] * 2
    assert stages[0].name == "build"


def test_build_stage_builds_as_ci_does(build_stage):
    cmds = build_stage.run_commands()
    assert build_stage.one("COPY") == ". ."
    install = cmds.index(["scripts/install-deps.sh", "build"])
    make = cmds.index(["make", "CI=1"])
    assert install < make
    assert ["make", "clean"] in cmds[:make]  # a host build/ in the context is not shipped
    # Those are the commands README/CI use: the install script knows "build", and CI=1
    # is what makes the Makefile add -Werror (CI runs with CI=true).
    assert re.search(r"^\s*build\)", (ROOT / "scripts/install-deps.sh").read_text(), re.M)
    assert "$(if $(CI),-Werror" in (ROOT / "Makefile").read_text()
    assert "export CI=" in (ROOT / ".ci/run").read_text()


def test_dockerignore_keeps_host_builds_out():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert "build/" in lines and ".git/" in lines


def test_runtime_installs_only_runtime_packages(runtime, runtime_pkgs):
    runs = " ".join(runtime.all("RUN"))
    assert "--no-install-recommends" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    for p in runtime_pkgs:
        assert not p.endswith("-dev") and p not in ("build-essential", "gcc", "make"), p
    # Each one exists in Debian 12's archive (no typo that only `docker build` finds).
    r = run(["apt-cache", "show", "--no-all-versions"] + runtime_pkgs)
    assert r.returncode == 0, r.stderr
    assert sorted(set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))) == sorted(set(runtime_pkgs))


def test_binary_copied_from_the_build_stage(build_stage, runtime):
    copies = runtime.all("COPY")
    workdir = build_stage.one("WORKDIR")
    assert f"--from=build {workdir}/build/jobdrainer.stripped /usr/local/bin/jobdrainer" in copies
    # ... and that file is the stripped copy of what make built (the image ships no
    # symbols: readelf in test_image.py checks the shipped binary).
    assert ["strip", "--strip-unneeded", "-o", "build/jobdrainer.stripped",
            "build/jobdrainer"] in build_stage.run_commands()


def test_default_ini_installed(runtime):
    assert "conf/jobdrainer.ini /etc/jobdrainer/jobdrainer.ini" in runtime.all("COPY")


def test_entrypoint_is_the_binary(runtime):
    assert exec_form(runtime.one("ENTRYPOINT")) == ["/usr/local/bin/jobdrainer"]
    assert exec_form(runtime.one("CMD")) == ["--config", "/etc/jobdrainer/jobdrainer.ini"]


def test_no_init_in_front_because_the_binary_waits_for_signals(runtime):
    assert not re.search(r"tini|dumb-init", " ".join(a for _, a in runtime.instructions))
    main = (ROOT / "sidecar" / "main.c").read_text()
    # The Dockerfile's comment rests on these: signals blocked, then taken by sigwait.
    assert re.search(r"pthread_sigmask\(SIG_BLOCK", main)
    assert "sigwait(" in main


def test_non_root_user_matches_the_chart(runtime, chart_values):
    user = runtime.one("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid " \
        "(runAsNonRoot can only check a numeric one)"
    useradd = [c for c in runtime.run_commands() if c[:1] == ["useradd"]]
    assert len(useradd) == 1 and useradd[0][useradd[0].index("--uid") + 1] == uid
    sc = chart_values["jobdrainer"]["securityContext"]
    assert sc["runAsUser"] == int(uid)
    if gid:
        assert sc["runAsGroup"] == int(gid)
    assert sc["runAsNonRoot"] is True


def test_exposed_port_is_the_chart_default(runtime, chart_values):
    assert runtime.one("EXPOSE") == str(chart_values["jobdrainer"]["http"]["port"])


# --------------------------------------------------------------------------- libraries

def loaded_libraries(binary):
    """{soname: path} of everything the dynamic loader maps for the binary."""
    r = run(["ldd", str(binary)])
    assert r.returncode == 0, r.stderr
    libs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(0x", line)
        if m:
            libs[m.group(1)] = m.group(2)
        else:
            m = re.match(r"\s*(/\S+) \(0x", line)  # the loader itself
            if m:
                libs[os.path.basename(m.group(1))] = m.group(1)
            else:
                assert "linux-vdso" in line or not line.strip(), line
    assert "not found" not in r.stdout
    return libs


def needed(binary):
    r = run(["objdump", "-p", str(binary)])
    assert r.returncode == 0, r.stderr
    return re.findall(r"^\s*NEEDED\s+(\S+)$", r.stdout, re.M)


def owning_packages(paths):
    """{path: Debian package} by dpkg -S, trying the /lib <-> /usr/lib alias of merged-/usr."""
    def variants(p):
        out = [p, os.path.realpath(p)]
        for q in list(out):
            if q.startswith("/usr/lib/"):
                out.append(q[4:])
            elif q.startswith("/lib/") or q.startswith("/lib64/"):
                out.append("/usr" + q)
        return list(dict.fromkeys(out))
    tries = {p: variants(p) for p in paths}
    r = run(["dpkg", "-S"] + sorted({v for vs in tries.values() for v in vs}))
    shipped = {}  # dpkg -S answers "pkg[:arch][, pkg2...]: path" for what it finds
    for line in r.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        shipped[path.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    owner = {}
    for p, vs in tries.items():
        found = [shipped[v] for v in vs if v in shipped]
        assert found, f"no Debian package ships {p}"
        owner[p] = found[0]
    return owner


_base = None


def base_image_packages():
    """What every Debian image has before any apt-get install: the Essential and
    Priority required packages (debootstrap's minbase, which bookworm-slim is) and what
    they depend on (libc6 is Priority optional, there through the Essential ones)."""
    global _base
    if _base is None:
        r = run(["dpkg-query", "-W", "-f", "${Package} ${Essential} ${Priority}\n"])
        roots = [l.split()[0] for l in r.stdout.splitlines()
                 if l.split()[1:] and (l.split()[1] == "yes" or l.split()[-1] == "required")]
        assert "coreutils" in roots
        _base = depends_closure(roots)
    return _base


def depends_closure(pkgs):
    """Packages apt installs for pkgs without recommends: Depends and Pre-Depends,
    recursively, taking the first of alternatives (apt's choice on an empty system)
    and the first provider of a virtual package. One apt-cache run lists the graph
    (through every alternative); the walk then follows only the first ones."""
    r = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + list(pkgs))
    assert r.returncode == 0, r.stderr
    graph, providers = {}, {}   # package -> [first alternative of each group]
    node, in_group, last = None, False, None
    for line in r.stdout.splitlines():
        if not line.startswith(" "):
            node = line.strip()
            graph.setdefault(node, [])
            in_group, last = False, None
            continue
        m = re.match(r"^ ( |\|)(?:Pre)?Depends: (\S+)", line)
        if m:
            alt, name = m.group(1) == "|", m.group(2).split(":")[0]
            if not in_group:
                graph[node].append(name)
                last = name
            else:
                last = None
            in_group = alt
        elif re.match(r"^    \S", line) and last and last.startswith("<"):
            providers.setdefault(last, line.strip())  # the first provider
            last = None
        elif re.match(r"^  \S", line):
            in_group, last = False, None  # another kind of relation ends a group
    seen, todo = set(), [p for p in pkgs]
    while todo:
        p = todo.pop()
        if p.startswith("<"):
            p = providers.get(p, p)
        if p in seen:
            continue
        seen.add(p)
        todo += graph.get(p, [])
    return {p for p in seen if not p.startswith("<")}


def test_direct_libraries_come_from_listed_packages(binary, runtime_pkgs):
    libs = loaded_libraries(binary)
    direct = needed(binary)
    assert direct, "no NEEDED entries: not a dynamic binary?"
    owner = owning_packages([libs[n] for n in direct])
    base = base_image_packages()
    for soname in direct:
        pkg = owner[libs[soname]]
        assert pkg in runtime_pkgs or pkg in base, \
            f"{soname} comes from {pkg}, which the runtime stage does not install"
        if pkg not in runtime_pkgs:
            # Only the C library may be taken for granted; anything else the binary
            # links itself is listed, so the list says what the image is for.
            assert pkg == "libc6", f"{soname}: {pkg} relied on from the base image"


def test_every_loaded_library_is_in_the_runtime_closure(binary, runtime_pkgs):
    libs = loaded_libraries(binary)
    owner = owning_packages(list(libs.values()))
    closure = depends_closure(runtime_pkgs) | base_image_packages()
    missing = {so: owner[p] for so, p in libs.items() if owner[p] not in closure}
    assert not missing, f"loaded but not installed by the runtime stage: {missing}"


# --------------------------------------------------------------------------- the binary as the image runs it

def test_default_ini_passes_check_config(binary):
    r = run([str(binary), "--check-config", "--config", str(DEFAULT_INI)])
    assert r.returncode == 0, r.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runs_as_pid1_and_uid_and_stops_on_sigterm(binary, runtime):
    """As in the container: PID 1 of its own PID namespace, the image's uid, the default
    INI (database pointed at a closed port). SIGTERM must end it with status 0."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root and util-linux unshare/setpriv for a PID namespace")
    uid, _, gid = runtime.one("USER").partition(":")
    gid = gid or uid
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        ini = pathlib.Path(d, "jobdrainer.ini")
        text = DEFAULT_INI.read_text()
        text = re.sub(r"(?m)^port = 3306$", "port = 1", text)
        text = re.sub(r"(?m)^listen = .*$", f"listen = 127.0.0.1:{_free_port()}", text)
        ini.write_text(text)
        os.chmod(ini, 0o644)
        env = dict(os.environ, POD_NAME="pid1-test")
        p = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "setpriv", "--reuid", uid,
             "--regid", gid, "--clear-groups", str(binary), "--config", str(ini)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        out = ""
        try:
            deadline = time.monotonic() + 10
            while "jobdrainer starting" not in out and time.monotonic() < deadline:
                if p.poll() is not None:
                    break
                if select.select([p.stdout], [], [], 0.2)[0]:
                    out += p.stdout.readline()
            if p.poll() is not None and "Operation not permitted" in out:
                pytest.skip("no PID namespaces here: " + out[-200:])
            assert "jobdrainer starting" in out, out
            assert re.search(r"holder=pid1-test:1\b", out), "not PID 1: " + out
            children = pathlib.Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            assert len(children) == 1
            child = int(children[0])
            assert os.stat(f"/proc/{child}").st_uid == int(uid)
            os.kill(child, signal.SIGTERM)
            rc = p.wait(timeout=30)
            out += p.stdout.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert rc == 0, out
        assert "signal=SIGTERM" in out and "msg=stopped" in out, out
