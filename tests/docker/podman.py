"""A private, daemonless podman for building and running the image on a CI machine.

No Docker daemon and no image registry here, but Debian's archive is reachable. So:
podman (its built-in buildah does the build) with runc, a store and configuration of
its own under one directory (nothing in /var/lib/containers or /etc/containers is
touched), and the base image made locally the way Debian makes the official one
(debuerreotype), imported under the name `FROM debian:bookworm-slim` resolves to, so the
Dockerfile builds unchanged with `--pull=never`. Only host networking: podman's default
bridge network would change the host's nftables rules and ip_forward.

Why each setting (checked on Debian 12 with podman 4.3):
- runtime runc: crun 1.8 refuses this kernel's hybrid cgroup layout ("cgroups in hybrid
  mode not supported");
- cgroupfs and a file events log: systemd is not PID 1 here;
- default_ulimits within the hard limits: root here lacks CAP_SYS_RESOURCE, and podman's
  defaults (nofile 1048576) fail with "error setting rlimit".

  /usr/bin/python3 tests/docker/podman.py build [--keep DIR]   build, print the size
  /usr/bin/python3 tests/docker/podman.py reset DIR            remove a kept store

Used by tests/docker/test_image.py (make image-test)."""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"   # what FROM debian:bookworm-slim names
IMAGE = "localhost/jobdrainer:test"
SUITE = "bookworm"
# The official image's sources (deb822, main only); the host's file says the same thing
# with this machine's mirror, so it is copied when it exists.
HOST_SOURCES = "/etc/apt/sources.list.d/debian.sources"
# Runtime state podman and runc create outside the private directory; removed at reset
# when they did not exist before.
RUNTIME_DIRS = ("/run/runc", "/run/containers", "/run/libpod", "/run/crun")


class PodmanError(RuntimeError):
    pass


def _mirror_uri():
    """The Debian mirror of this machine's apt sources (deb.debian.org if none)."""
    try:
        with open(HOST_SOURCES) as f:
            for line in f:
                if line.startswith("URIs:") and "security" not in line:
                    return line.split()[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


class Podman:
    """podman with its own store and configuration in `dir` (created if missing).
    reset() removes every container and image and the runtime state it created."""

    def __init__(self, dir=None):
        self.dir = os.path.abspath(dir or tempfile.mkdtemp(prefix="jdpodman-", dir="/var/tmp"))
        self.preexisting = {d for d in RUNTIME_DIRS if os.path.exists(d)}
        for sub in ("graph", "run", "tmp", "net", "base"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.env = dict(os.environ,
                        CONTAINERS_CONF=self._write_conf(),
                        CONTAINERS_STORAGE_CONF=self._write_storage_conf())
        self.timings = {}

    def _write_storage_conf(self):
        path = os.path.join(self.dir, "storage.conf")
        with open(path, "w") as f:
            f.write('[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n'
                    % (os.path.join(self.dir, "graph"), os.path.join(self.dir, "run")))
        return path

    def _write_conf(self):
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
        path = os.path.join(self.dir, "containers.conf")
        with open(path, "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                    'netns = "host"\n'
                    '[engine]\n'
                    'runtime = "runc"\n'
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    'events_logfile_path = "%s"\n'
                    'tmp_dir = "%s"\n'
                    '[network]\n'
                    'network_config_dir = "%s"\n'
                    % (nofile, nofile, nproc, nproc, os.path.join(self.dir, "events.log"),
                       os.path.join(self.dir, "tmp"), os.path.join(self.dir, "net")))
        return path

    # ---- running podman ----------------------------------------------------------------

    def argv(self, *args):
        """The command line of `podman args...` in this store (for Popen)."""
        return ["podman"] + [str(a) for a in args]

    def run(self, *args, check=True, timeout=600, input=None):
        """podman args...; returns the CompletedProcess (stdout and stderr as text)."""
        r = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise PodmanError("podman %s: exit %d\n%s%s" % (" ".join(map(str, args)),
                              r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def has_image(self, name):
        return self.run("image", "exists", name, check=False).returncode == 0

    def inspect(self, name, kind="image"):
        return json.loads(self.run(kind, "inspect", name).stdout)[0]

    # ---- the base image, as Debian makes debian:bookworm-slim --------------------------

    def make_base(self):
        """debuerreotype root of bookworm (minbase, slimified, dist-upgraded), imported as
        debian:bookworm-slim. Skipped when the store already has it."""
        if self.has_image(BASE_IMAGE):
            return
        t0 = time.monotonic()
        root = os.path.join(self.dir, "base", "rootfs")
        shutil.rmtree(root, ignore_errors=True)
        sh = lambda *a: _check([str(x) for x in a])  # noqa: E731
        try:
            sh("debuerreotype-init", "--non-debian", root, SUITE, _mirror_uri())
            sh("debuerreotype-minimizing-config", root)
            apt_dir = os.path.join(root, "etc", "apt")
            for old in ("sources.list",):
                if os.path.exists(os.path.join(apt_dir, old)):
                    os.unlink(os.path.join(apt_dir, old))
            with open(os.path.join(apt_dir, "sources.list.d", "debian.sources"), "w") as f:
                f.write(_official_sources())
            # apt inside the root needs a resolver only while it runs.
            resolv = os.path.join(root, "etc", "resolv.conf")
            if os.path.lexists(resolv):
                os.unlink(resolv)
            shutil.copyfile("/etc/resolv.conf", resolv)
            sh("debuerreotype-apt-get", root, "update", "-qq")
            sh("debuerreotype-apt-get", root, "dist-upgrade", "-yqq")
            os.unlink(resolv)
            sh("debuerreotype-slimify", root)
            tar = os.path.join(self.dir, "base", "base.tar")
            sh("debuerreotype-tar", root, tar)
            self.run("import",
                     "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--change", 'CMD ["bash"]', tar, BASE_IMAGE)
        finally:
            shutil.rmtree(os.path.join(self.dir, "base"), ignore_errors=True)
        self.timings["base_s"] = time.monotonic() - t0

    # ---- the project's image ----------------------------------------------------------

    def build(self, tag=IMAGE, context=REPO):
        """podman build of the Dockerfile, offline from registries; returns the log."""
        self.make_base()
        t0 = time.monotonic()
        r = self.run("build", "--pull=never", "--network", "host", "--layers=false",
                     "-t", tag, "-f", os.path.join(context, "Dockerfile"), context,
                     timeout=1800)
        self.timings["build_s"] = time.monotonic() - t0
        return r.stdout + r.stderr

    def size(self, name=IMAGE):
        """Uncompressed size of the image in bytes."""
        return int(self.inspect(name)["Size"])

    def compressed_size(self, name=IMAGE):
        """Size of `podman save` in docker-archive form, gzip'd (what a registry moves)."""
        save = subprocess.Popen(self.argv("save", "--format", "docker-archive", name),
                                env=self.env, stdout=subprocess.PIPE)
        gz = subprocess.run(["gzip", "-c"], stdin=save.stdout, capture_output=True)
        save.stdout.close()
        if save.wait() != 0 or gz.returncode != 0:
            raise PodmanError("podman save %s failed" % name)
        return len(gz.stdout)

    # ---- clean up ---------------------------------------------------------------------

    def reset(self):
        """Remove every container, image and mount of this store, the store itself, and
        the runtime directories podman created in /run."""
        self.run("rm", "--all", "--force", "--time", "5", check=False)
        self.run("system", "reset", "--force", check=False)
        graph = os.path.join(self.dir, "graph")
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for m in sorted((m for m in mounts if m.startswith(self.dir)), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in RUNTIME_DIRS:
            if d not in self.preexisting and os.path.isdir(d):
                shutil.rmtree(d, ignore_errors=True)
        return not os.path.exists(graph)


def _official_sources():
    if os.path.exists(HOST_SOURCES):
        with open(HOST_SOURCES) as f:
            return f.read()
    return ("Types: deb\nURIs: http://deb.debian.org/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: http://deb.debian.org/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def _check(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise PodmanError("%s: exit %d\n%s%s" % (" ".join(argv), r.returncode,
                                                 r.stdout[-3000:], r.stderr[-3000:]))
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the image and print its size")
    b.add_argument("--keep", metavar="DIR", help="keep the store in DIR (reuse its base)")
    r = sub.add_parser("reset", help="remove a store kept with build --keep")
    r.add_argument("dir")
    args = ap.parse_args(argv)
    if args.cmd == "reset":
        Podman(args.dir).reset()
        return 0
    p = Podman(args.keep)
    try:
        p.build()
        print("image %s: %.1f MB uncompressed, %.1f MB compressed; base %.0fs, build %.0fs"
              % (IMAGE, p.size() / 1e6, p.compressed_size() / 1e6,
                 p.timings.get("base_s", 0), p.timings["build_s"]))
    finally:
        if not args.keep:
            p.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
