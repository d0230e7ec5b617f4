"""Runs the real jobdrainer binary as a "pod": its own INI, holder name and log file.

Used by the integration tests, the demo and the benchmarks. Logs are read back as
structured lines (JSON format by default, the text format is parsed too), so tests
assert on what the daemon actually printed."""

import json
import os
import re
import shlex
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BINARY = os.environ.get("JOBDRAINER", os.path.join(REPO, "build", "jobdrainer"))

_TEXT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_text_line(line):
    """One key=value log line as a dict (values unquoted and unescaped)."""
    out = {}
    for key, value in _TEXT_PAIR.findall(line):
        if value.startswith('"'):
            value = json.loads(value)
        out[key] = value
    return out


def farm_ini(farm, **sections):
    """An INI for a sidecar of `farm`: its MariaDB, its Apache, fast test timings.
    sections: {"section": {"key": value}} overrides and additions."""
    base = {
        # debug: the tests read each batch's line (at info a pod logs one line per drain).
        "sidecar": {"workers": 2, "log_format": "json", "log_level": "debug",
                    "shutdown_timeout": 20},
        # Many sidecars share this machine: each gets a free port for its endpoints.
        "http": {"listen": "127.0.0.1:0"},
        "mediawiki": {"host": "127.0.0.1", "port": farm.http_port, "maxjobs": 100,
                      "maxtime": 10},
        "platform_db": {"host": "127.0.0.1", "port": farm.mysql_port,
                        "user": "jobdrainer", "password": "jdpass", "database": "apidb"},
        "discovery": {"interval": 2},
        "scan": {"interval": 1},
        "drain": {"time_slice": 20, "backoff_base": 2, "backoff_max": 30},
    }
    for section, keys in sections.items():
        base.setdefault(section, {}).update(keys)
    lines = []
    for section, keys in base.items():
        lines.append("[%s]" % section)
        for key, value in keys.items():
            if value is None:
                continue
            text = str(value)
            # Long values (SQL) continue on indented lines, as conf/ documents.
            lines.append("%s = %s" % (key, text.replace("\n", "\n    ")))
        lines.append("")
    return "\n".join(lines)


class Sidecar:
    """One jobdrainer process. Start with .start(); stop with .stop() (SIGTERM)."""

    def __init__(self, workdir, name, ini_text, env=None):
        self.name = name
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ini = os.path.join(workdir, name + ".ini")
        self.log_path = os.path.join(workdir, name + ".log")
        with open(self.ini, "w") as f:
            f.write(ini_text)
        self.env = dict(os.environ)
        self.env["POD_NAME"] = name
        self.env.update(env or {})
        self.proc = None
        self.returncode = None

    def command(self):
        """The daemon's command line (after the wrapper). Subclasses run it elsewhere:
        in a container (tests/docker), as a package's service (tests/deb)."""
        return [BINARY, "--config", self.ini]

    def launch(self, wrapper=()):
        """Starts the process without waiting for it to come up."""
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(list(wrapper) + self.command(),
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env)
        return self

    def start(self, wrapper=()):
        self.launch(wrapper)
        self.wait_for(lambda l: l.get("msg") == "jobdrainer starting", timeout=10)
        return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def http_port(self):
        line = self.wait_for(lambda l: l.get("msg") == "http endpoints listening",
                             timeout=10, what="http endpoints")
        return int(line["port"])

    def get(self, path):
        """GET one of the sidecar's endpoints: (status, text)."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http_port, path),
                                        timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        """/metrics parsed: {'name{labels}': value}."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def lines(self):
        """Every log line so far, parsed (JSON or text)."""
        out = []
        with open(self.log_path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if not line:
                    continue
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                        continue
                    except ValueError:
                        pass
                out.append(parse_text_line(line) or {"raw": line})
        return out

    def raw(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def batches(self, wiki=None):
        return [l for l in self.lines() if l.get("msg") in ("batch", "batch failed")
                and (wiki is None or l.get("wiki") == wiki)]

    def wait_for(self, pred, timeout=60, what="log line"):
        """Waits until some log line satisfies pred; returns it. Fails early if the
        process exits."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                raise AssertionError("%s exited (%s) while waiting for %s; log:\n%s"
                                     % (self.name, self.proc.returncode, what,
                                        self.raw()[-4000:]))
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s in %s; log:\n%s"
                                     % (what, self.name, self.raw()[-4000:]))
            time.sleep(0.1)

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the process and waits for it; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not exit within %ss of %s; log:\n%s"
                                     % (self.name, timeout, sig, self.raw()[-4000:]))
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(pred, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def command_line(args):
    return " ".join(shlex.quote(a) for a in args)
