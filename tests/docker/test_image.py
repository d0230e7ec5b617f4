"""The real image, built and run: make image-test.

Builds the Dockerfile with a private, daemonless podman (tests/docker/podman.py: runc,
a local debuerreotype base image under the name FROM uses, --pull=never, host network)
and runs the image as the chart runs it: its own USER (non-root uid 10001), a read-only
root filesystem, no capabilities, no-new-privileges, the binary as PID 1. The sidecar in
the container drains a real test farm (MariaDB + Apache/mod_php + MediaWiki) over the
host's loopback and exits 0 on SIGTERM. It also reports what the image is: its size and
the packages the runtime stage added to the base.

Skipped unless JD_IMAGE_TEST=1 (make image-test sets it; make test has no podman and
runs the static checks of test_dockerfile.py instead). JD_IMAGE_STORE=DIR keeps the
podman store, with its base image, between runs (for working on the Dockerfile).

  make image-test
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "farm"))
sys.path.insert(0, str(HERE.parents[0] / "integration"))

import podman as podman_mod  # noqa: E402
from farm import temporary_farm  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402
from test_dockerfile import DOCKERFILE, apt_installed, depends_closure, \
    parse_dockerfile  # noqa: E402

IMAGE = podman_mod.IMAGE
BASE = podman_mod.BASE_IMAGE
# What the runtime stage may add to bookworm-slim. Measured 15.6 MB (93.5 MB image on a
# 77.9 MB base): a limit well above it, so only a real change (a -dev package, a
# compiler, an unstripped binary with debug info) trips it.
MAX_ADDED_BYTES = 30_000_000

pytestmark = pytest.mark.skipif(os.environ.get("JD_IMAGE_TEST") != "1",
                                reason="builds and runs the image: make image-test")


@pytest.fixture(scope="module")
def podman():
    if os.geteuid() != 0:
        pytest.fail("make image-test runs as root (podman's store, runc, debuerreotype)")
    for tool in ("podman", "runc", "debuerreotype-init"):
        assert shutil.which(tool), "%s missing: scripts/install-deps.sh image" % tool
    keep = os.environ.get("JD_IMAGE_STORE")
    p = podman_mod.Podman(keep)
    try:
        p.build()
        yield p
    finally:
        if not keep:
            assert p.reset(), "podman store not removed: " + p.dir


@pytest.fixture(scope="module")
def farm():
    with temporary_farm("jdimage-", wikis=2) as f:
        yield f


def runtime_packages():
    return apt_installed(parse_dockerfile(DOCKERFILE.read_text())[-1])


def packages_in(podman, image):
    out = podman.run("run", "--rm", "--network", "host", "--entrypoint", "dpkg-query",
                     image, "-W", "-f", "${Package}\\n").stdout
    return set(out.split())


class ContainerSidecar(Sidecar):
    """A Sidecar whose daemon is the image's ENTRYPOINT in a container run the way the
    chart's securityContext runs it; the INI's directory is mounted read-only at the
    same path. SIGTERM to `podman run` reaches the container's PID 1 (sig-proxy), and
    podman's exit status is the container's."""

    def __init__(self, podman, workdir, name, ini_text):
        super().__init__(workdir, name, ini_text, env=podman.env)
        self.podman = podman
        self.container = "jdtest-%s-%s" % (name, uuid.uuid4().hex[:8])

    def command(self):
        return self.podman.argv(
            "run", "--rm", "--name", self.container, "--network", "host",
            "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-e", "POD_NAME=" + self.name,
            "-v", "%s:%s:ro" % (self.dir, self.dir), IMAGE, "--config", self.ini)

    def exec(self, *argv):
        return self.podman.run("exec", self.container, *argv, check=False)

    def host_pid(self):
        return int(self.podman.run("inspect", "--format", "{{.State.Pid}}",
                                   self.container).stdout)

    def remove(self):
        self.kill()
        self.podman.run("rm", "--force", "--time", "0", self.container, check=False)


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


# --------------------------------------------------------------------------- what the image is

def test_image_holds_only_what_the_binary_needs(podman):
    size, base_size = podman.size(IMAGE), podman.size(BASE)
    compressed = podman.compressed_size(IMAGE)
    image_pkgs, base_pkgs = packages_in(podman, IMAGE), packages_in(podman, BASE)
    added = image_pkgs - base_pkgs
    wanted = set(runtime_packages())
    print("\nimage %s: %.1f MB uncompressed (base %.1f MB, +%.1f MB), %.1f MB as a "
          "gzip'd docker-archive; base made in %.0fs, image built in %.0fs"
          % (IMAGE, size / 1e6, base_size / 1e6, (size - base_size) / 1e6,
             compressed / 1e6, podman.timings.get("base_s", 0),
             podman.timings.get("build_s", 0)))
    print("packages added to bookworm-slim (%d): %s" % (len(added), " ".join(sorted(added))))
    assert wanted <= image_pkgs, wanted - image_pkgs
    # Nothing beyond what apt pulls in for the listed runtime libraries.
    extra = added - depends_closure(sorted(wanted))
    assert not extra, "packages the runtime stage did not ask for: %s" % sorted(extra)
    assert not {p for p in image_pkgs if p.endswith("-dev") or p in ("gcc", "make", "cpp")}
    assert size - base_size < MAX_ADDED_BYTES, (size, base_size)
    # apt's lists are not shipped.
    r = podman.run("run", "--rm", "--network", "host", "--entrypoint", "sh", IMAGE, "-c",
                   "ls /var/lib/apt/lists | grep -v -e '^lock$' -e '^partial$' || true")
    assert r.stdout.strip() == "", r.stdout


def test_binary_is_stripped_and_every_library_resolves(podman, tmp_path):
    r = podman.run("run", "--rm", "--network", "host", "--entrypoint", "ldd", IMAGE,
                   "/usr/local/bin/jobdrainer")
    assert "not found" not in r.stdout and "libmariadb.so.3" in r.stdout, r.stdout
    ctr = "jdtest-cp-" + uuid.uuid4().hex[:8]
    podman.run("create", "--name", ctr, IMAGE)
    try:
        podman.run("cp", ctr + ":/usr/local/bin/jobdrainer", str(tmp_path / "jobdrainer"))
    finally:
        podman.run("rm", "--force", ctr, check=False)
    sections = subprocess.run(["readelf", "-S", "-W", str(tmp_path / "jobdrainer")],
                              capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, sections


def test_image_config_is_what_the_chart_expects(podman):
    cfg = podman.inspect(IMAGE)["Config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["/usr/local/bin/jobdrainer"]
    assert cfg["Cmd"] == ["--config", "/etc/jobdrainer/jobdrainer.ini"]
    assert not any(e.startswith("DEBIAN_FRONTEND=") for e in cfg.get("Env", []))
    r = podman.run("run", "--rm", "--network", "host", "--entrypoint", "id", IMAGE)
    assert r.stdout.strip() == "uid=10001(jobdrainer) gid=10001(jobdrainer) " \
        "groups=10001(jobdrainer)", r.stdout
    # The shipped INI is the documented one, and valid.
    r = podman.run("run", "--rm", "--network", "host", IMAGE, "--check-config",
                   "--config", "/etc/jobdrainer/jobdrainer.ini")
    assert "[platform_db]" in r.stdout


def test_without_pod_name_containers_on_one_host_share_a_holder(podman):
    """Why README tells docker/podman users to set POD_NAME (or [sidecar] holder): the
    holder is POD_NAME or the hostname, plus the pid, and the pid is 1 in every
    container. With host networking every container has the host's name."""
    def holder(*env):
        r = podman.run("run", "--rm", "--network", "host", *env, IMAGE, "--check-config")
        return re.search(r"(?m)^holder = (\S+)$", r.stdout).group(1)

    first, second = holder(), holder()
    assert first == second and first.endswith(":1"), (first, second)
    assert holder("-e", "POD_NAME=vm1-jd-a") == "vm1-jd-a:1"


# --------------------------------------------------------------------------- the image at work

def test_container_drains_the_farm_as_pid1_non_root_read_only(podman, farm, tmp_path):
    wikis = sorted(farm.wikis)
    for domain in wikis:
        farm.push_null_jobs(domain, 250)
    os.chmod(tmp_path, 0o755)   # the container's uid reads the mounted INI
    pod = ContainerSidecar(podman, str(tmp_path), "img-a", farm_ini(farm))
    try:
        pod.launch()
        start = pod.wait_for(lambda l: l.get("msg") == "jobdrainer starting", timeout=60)
        assert start["holder"] == "img-a:1", start     # PID 1 of its namespace

        # As the chart runs it: non-root, no capabilities, no new privileges, read-only /.
        status = proc_status(pod.host_pid())
        assert status["Uid"].split() == ["10001"] * 4, status["Uid"]
        assert status["Gid"].split() == ["10001"] * 4, status["Gid"]
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        for path in ("/probe", "/etc/jobdrainer/probe", "/tmp/probe"):
            r = pod.exec("touch", path)
            assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r)

        for domain in wikis:
            wait_until(lambda d=domain: farm.total_jobs(d) == 0, timeout=180,
                       what="%s drained from the container" % domain)
        batches = pod.batches()
        assert sum(b["jobs_ok"] for b in batches) >= 250 * len(wikis), batches
        assert all(b["http_status"] == 200 for b in batches), batches
        posts = [e for e in farm.access_log_entries()
                 if e["request"].startswith("POST /w/index.php?jobdrainer_holder=img-a%3A1")
                 or e["request"].startswith("POST /w/index.php?jobdrainer_holder=img-a:1")]
        assert {e["host"] for e in posts} >= set(wikis), farm.access_log_entries()[-5:]
        status, body = pod.get("/readyz")
        assert status == 200, body

        assert pod.stop(signal.SIGTERM, timeout=90) == 0, pod.raw()[-3000:]
        lines = pod.lines()
        assert any(l.get("msg") == "stopping" and l.get("signal") == "SIGTERM"
                   for l in lines), lines[-5:]
        assert lines[-1]["msg"] == "stopped", lines[-5:]
    finally:
        pod.remove()
