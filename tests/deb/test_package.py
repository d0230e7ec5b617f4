"""The Debian package, built with the standard tools and used as a VM farm would: make deb-test.

One lifecycle, in order: dpkg-buildpackage -us -uc -b (in a copy of the work tree, so the
tree stays clean; debian/ is standard packaging), lintian (every remaining tag explained
in debian/jobdrainer.lintian-overrides), dpkg -i, the files, conffile, user and INI mode
it installs, systemd-analyze verify of the installed unit, the installed binary draining
a real test farm as the unit's User/Group with the unit's ExecStart, then dpkg -r (the
conffile stays) and dpkg -P (nothing left).

systemd is not PID 1 on the CI machines (systemctl answers "offline"), so the unit's
ExecStart runs under setpriv as its User and Group, with no new privileges and no
capabilities, and the package's INI is replaced by the test farm's for the run.

Skipped unless JD_DEB_TEST=1 (make deb-test sets it); it installs and purges a system
package, so it runs as root on a test machine only.
"""
import configparser
import glob
import grp
import os
import pathlib
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "farm"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from farm import temporary_farm  # noqa: E402
from sidecar import Sidecar, farm_ini, wait_until  # noqa: E402

PKG = "jobdrainer"
UNIT = "/lib/systemd/system/jobdrainer.service"
INI = "/etc/jobdrainer/jobdrainer.ini"

pytestmark = pytest.mark.skipif(os.environ.get("JD_DEB_TEST") != "1",
                                reason="builds, installs and purges the package: make deb-test")


def run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(argv), r.returncode,
                                                    r.stdout[-4000:], r.stderr[-4000:]))
    return r


def installed():
    r = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", PKG], check=False)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def workdir():
    if os.geteuid() != 0:
        pytest.fail("make deb-test runs as root (it installs the package)")
    if installed() not in ("", "not-installed", "config-files"):
        pytest.fail("%s is already installed here; this test would replace it" % PKG)
    d = tempfile.mkdtemp(prefix="jddeb-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    if installed() not in ("", "not-installed"):
        run(["dpkg", "--purge", PKG], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def build(workdir):
    """dpkg-buildpackage in a copy of what git tracks (plus new, unignored files)."""
    src = workdir / "src" / PKG
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    t0 = time.monotonic()
    r = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, check=False)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-4000:]
    debs = glob.glob(str(workdir / "src" / ("%s_*.deb" % PKG)))
    changes = glob.glob(str(workdir / "src" / "*.changes"))
    assert len(debs) == 1 and len(changes) == 1, os.listdir(workdir / "src")
    print("\ndpkg-buildpackage -us -uc -b: %.0fs; %s (%d kB)"
          % (seconds, os.path.basename(debs[0]), os.path.getsize(debs[0]) // 1024))
    return {"deb": debs[0], "changes": changes[0], "src": src}


def test_build_leaves_the_source_tree_as_git_sees_it(build):
    # What dpkg-buildpackage left inside the copied tree is ignored by .gitignore.
    r = run(["git", "status", "--porcelain", "--ignored=no", "--untracked-files=all"],
            cwd=build["src"], check=False, env=dict(os.environ, GIT_DIR=str(ROOT / ".git"),
                                                     GIT_WORK_TREE=str(build["src"])))
    new = [l for l in r.stdout.splitlines() if l.startswith("??")]
    assert not new, new


def test_lintian_clean(build):
    r = run(["lintian", "--info", "--display-info", "--pedantic", "--show-overrides",
             "--fail-on", "error,warning", build["changes"]], check=False)
    print("lintian (overridden tags shown with O:):\n" + (r.stdout or "(no output)\n"))
    tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
    assert r.returncode == 0 and not tags, r.stdout + r.stderr


def test_contents(build):
    listing = run(["dpkg-deb", "-c", build["deb"]]).stdout
    for path in ("./usr/sbin/jobdrainer", "." + UNIT, "." + INI,
                 "./usr/share/man/man8/jobdrainer.8.gz", "./usr/share/doc/jobdrainer/copyright"):
        assert path in listing.split(), path
    r = run(["dpkg-deb", "--info", build["deb"], "conffiles"])
    assert r.stdout.split() == [INI], r.stdout


@pytest.fixture(scope="module")
def install(build):
    r = run(["dpkg", "-i", build["deb"]], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed() == "installed"
    return r


def unit_service_section():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    return cp["Service"]


def test_install_creates_user_and_protects_the_ini(install):
    pw = pwd.getpwnam("jobdrainer")
    assert pw.pw_uid < 1000 and pw.pw_shell in ("/usr/sbin/nologin", "/bin/false"), pw
    assert not os.path.exists(pw.pw_dir) or pw.pw_dir == "/nonexistent"
    st = os.stat(INI)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == \
        (0, grp.getgrnam("jobdrainer").gr_gid, 0o640), st
    # The package's own INI is the documented one and valid, read as the service user.
    r = run(["setpriv", "--reuid=jobdrainer", "--regid=jobdrainer", "--init-groups",
             "/usr/sbin/jobdrainer", "--check-config", "--config", INI])
    assert "[platform_db]" in r.stdout


def test_systemd_analyze_verifies_the_unit(install):
    r = run(["systemd-analyze", "verify", UNIT], check=False)
    print("systemd-analyze verify %s: exit %d %s" % (UNIT, r.returncode,
                                                   (r.stdout + r.stderr).strip() or "(silent)"))
    assert r.returncode == 0 and "jobdrainer" not in r.stdout + r.stderr, r.stdout + r.stderr
    svc = unit_service_section()
    assert svc["User"] == "jobdrainer" and svc["KillSignal"] == "SIGTERM"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert svc[key] == "yes", key
    assert svc["ProtectSystem"] == "strict"
    # Stopping waits longer than the daemon's own shutdown_timeout before SIGKILL.
    cfg = configparser.ConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";",))
    cfg.read(str(ROOT / "conf" / "jobdrainer.ini"))
    assert int(svc["TimeoutStopSec"].rstrip("s")) > cfg.getint("sidecar", "shutdown_timeout")
    r = run(["systemd-analyze", "security", "--offline=yes", UNIT], check=False)
    print("systemd-analyze security --offline: " + (r.stdout.strip().splitlines() or ["?"])[-1])


class ServiceSidecar(Sidecar):
    """The installed unit's ExecStart, run as its User/Group (systemd is not PID 1 here),
    with systemd's clean environment: no POD_NAME, so the holder is host:pid."""

    def __init__(self, workdir, ini_text):
        super().__init__(workdir, "deb", ini_text)
        for key in ("POD_NAME", "HOSTNAME"):
            self.env.pop(key, None)
        svc = unit_service_section()
        self.exec_start = shlex.split(svc["ExecStart"])
        self.user, self.group = svc["User"], svc["Group"]

    def command(self):
        return ["setpriv", "--reuid=" + self.user, "--regid=" + self.group, "--init-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"] + self.exec_start


@pytest.fixture
def farm():
    with temporary_farm("jddebfarm-", wikis=2) as f:
        yield f


def test_installed_binary_drains_the_farm_as_the_service_user(install, farm, workdir):
    original = pathlib.Path(INI).read_bytes()
    pod = ServiceSidecar(str(workdir / "pod"), farm_ini(farm))
    assert pod.exec_start == ["/usr/sbin/jobdrainer", "--config", INI]
    for domain in farm.wikis:
        farm.push_null_jobs(domain, 200)
    try:
        # The package's INI (its owner and 0640 mode kept) says where the test farm is.
        with open(INI, "wb") as f:
            f.write(pathlib.Path(pod.ini).read_bytes())
        pod.launch()
        start = pod.wait_for(lambda l: l.get("msg") == "jobdrainer starting", timeout=30)
        assert start["holder"] == "%s:%d" % (socket.gethostname(), pod.pid), start
        with open("/proc/%d/status" % pod.pid) as f:
            status = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        uid = str(pwd.getpwnam("jobdrainer").pw_uid)
        assert status["Uid"].split() == [uid] * 4 and int(status["CapEff"], 16) == 0
        for domain in sorted(farm.wikis):
            wait_until(lambda d=domain: farm.total_jobs(d) == 0, timeout=180,
                       what="%s drained by the installed binary" % domain)
        # A batch's line is written after its answer is read and its lease released:
        # MediaWiki may have emptied the table a moment before.
        wait_until(lambda: sum(b["jobs_ok"] for b in pod.batches()) >= 200 * len(farm.wikis),
                   timeout=30, what="the batches' lines for every job")
        assert pod.stop(signal.SIGTERM, timeout=60) == 0, pod.raw()[-3000:]
        assert pod.lines()[-1]["msg"] == "stopped"
    finally:
        pod.kill()
        with open(INI, "wb") as f:
            f.write(original)


def test_remove_keeps_the_conffile_and_purge_removes_everything(install):
    r = run(["dpkg", "--remove", PKG], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed() == "config-files"
    assert not os.path.exists("/usr/sbin/jobdrainer") and not os.path.exists(UNIT)
    assert os.path.exists(INI)
    r = run(["dpkg", "--purge", PKG], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed() in ("", "not-installed")
    assert not os.path.exists("/etc/jobdrainer"), os.listdir("/etc/jobdrainer")
    assert run(["dpkg-statoverride", "--list", INI], check=False).stdout == ""
    leftovers = [p for p in ("/etc/systemd/system/multi-user.target.wants/jobdrainer.service",
                             "/var/lib/systemd/deb-systemd-helper-enabled/jobdrainer.service")
                 if os.path.lexists(p)]
    assert not leftovers, leftovers
