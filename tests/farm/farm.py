#!/usr/bin/python3
"""A real MediaWiki wiki farm on loopback, laid out like Wikibase Cloud (wbaas), for testing
jobdrainer.

What it starts, all in one farm directory DIR, all on 127.0.0.1 ports picked free:
- a private **mariadbd** (DIR/mysql-data, socket DIR/mysql.sock, TCP port) holding
  - `apidb`, the platform database: `wikis`, `wiki_dbs`, `wiki_settings` as wbaas's Laravel
    migrations create them (per-wiki `wgSecretKey` in `wiki_settings`);
  - one `mwdb_<10 hex>` database per wiki, tables prefixed `mwt_<10 hex>_`, each wiki with its
    own MariaDB user (`wiki_dbs.user`), cloned by SQL from one template wiki that
    MediaWiki's install.php creates at start (`farm_template`);
  - `jobdrainer`, empty, for the sidecar's own tables;
  - users: root (socket, no password), `jobdrainer`/`jdpass` (SELECT on apidb and
    mwdb_%, ALL on jobdrainer), `mediawiki`/`mwpass` (all privileges).
- on request (add_db_server), more private mariadbd servers (DIR/mysql-data-<name>, socket
  DIR/mysql-<name>.sock, own port) holding the wikis added with add_wiki(db_server=name):
  the same two users (`jobdrainer` with SELECT on mwdb_% only) and a copy of the template;
  apidb.farm_wiki_servers maps such a wiki to its server's 127.0.0.1:PORT.
- **Apache httpd** (prefork MPM + mod_php 8.2, private config DIR/httpd.conf) serving
  Debian's MediaWiki at /w: 1.39 (Debian 12's package) or, with FARM_MW=1.43 (`up --mw 1.43`),
  Debian 13's 1.43 unpacked by scripts/fetch-mediawiki.sh. The generated DIR/LocalSettings.php picks the wiki from
  the Host header (web) or WBS_DOMAIN (CLI), like wbstack, reading DIR/wikis/<domain>.json,
  *not* apidb, so a test can give MediaWiki another secret than the platform holds.
  Unknown hosts get HTTP 404 "no such wiki". $wgJobRunRate = 0: jobs run only through
  Special:RunJobs or runJobs.php. Access log DIR/logs/access.log (tab separated).

Guarantees:
- readiness is polled (socket, HTTP), never slept for;
- each process is recorded in DIR/pids/ as soon as it is spawned, and stop()
  (`farm.py down DIR`) terminates every process of the farm, even after a half-done start;
- DIR/farm.json describes the farm (ports, users, logs, wikis); Farm.load(DIR) reattaches.

Library: Farm(dir).start(wikis=N) ... .stop(), or `with Farm(dir) as f:`.
CLI:     /usr/bin/python3 tests/farm/farm.py {up,down,push,edit,jobs,...} DIR ...  (see -h)
Run it with Debian's /usr/bin/python3 (it has python3-pymysql); as root, like CI.
"""

import argparse
import contextlib
import dataclasses
import grp
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

try:
    import pymysql
except ImportError:  # pragma: no cover - depends on the interpreter used
    if __name__ == "__main__" and sys.executable != "/usr/bin/python3" \
            and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise ImportError("farm.py needs pymysql: run it with /usr/bin/python3 "
                      "(Debian package python3-pymysql), not a pyenv/venv python")

HERE = os.path.dirname(os.path.abspath(__file__))
# Which MediaWiki the farm serves: FARM_MW=1.39 (Debian 12's package, the default) or
# 1.43 (Debian 13's, unpacked by scripts/fetch-mediawiki.sh into JD_MW_CACHE);
# FARM_MW_DIR overrides the path of either.
MW_SERIES_DIRS = {
    "1.39": "/usr/share/mediawiki",
    "1.43": os.path.join(os.environ.get("JD_MW_CACHE", "/var/cache/jobdrainer-test"),
                         "mediawiki-1.43", "root", "usr", "share", "mediawiki"),
}
MW_SERIES = os.environ.get("FARM_MW", "1.39")
if MW_SERIES not in MW_SERIES_DIRS:
    raise ImportError("FARM_MW=%r: the farm knows MediaWiki %s"
                      % (MW_SERIES, ", ".join(sorted(MW_SERIES_DIRS))))
MW_DIR = os.environ.get("FARM_MW_DIR", MW_SERIES_DIRS[MW_SERIES])
APACHE_BIN = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
PHP_MODULE = APACHE_MODULES + "/libphp8.2.so"
PHP_BIN = "/usr/bin/php"

DEFAULT_VERSION = "mw1.39-wbs1"
SIDECAR_USER, SIDECAR_PASSWORD = "jobdrainer", "jdpass"
MW_USER, MW_PASSWORD = "mediawiki", "mwpass"
PLATFORM_DB, COORD_DB = "apidb", "jobdrainer"
TEMPLATE_DB, TEMPLATE_PREFIX = "farm_template", "mwt_template"
ADMIN_USER, ADMIN_PASSWORD = "Admin", "farm-admin-password-1"
MAX_WORKERS = 8
START_TIMEOUT = 60.0

# Tables whose rows are not copied when cloning the template wiki: the template's queued
# job (a new wiki starts with an empty queue) and caches.
CLONE_SKIP_ROWS = ("job", "objectcache", "l10n_cache")


class FarmError(RuntimeError):
    pass


@dataclasses.dataclass
class DbServer:
    """Another MariaDB server of the farm (Farm.add_db_server), for wikis whose database
    is not on the main one: DIR/mysql-data-<name>, DIR/mysql-<name>.sock, a free port."""
    name: str
    port: int
    socket: str

    @property
    def address(self):
        """host:port, as a discovery query's fifth column and $wgDBserver name it."""
        return "127.0.0.1:%d" % self.port


@dataclasses.dataclass
class Wiki:
    """One wiki as the platform (apidb) and MediaWiki (DIR/wikis/<domain>.json) see it."""
    domain: str
    wiki_id: int
    dbname: str           # wiki_dbs.name, e.g. mwdb_0123456789
    prefix: str           # wiki_dbs.prefix, without '_'; $wgDBprefix is prefix + '_'
    secret: str           # the platform's wgSecretKey (wiki_settings)
    mw_secret: str        # the $wgSecretKey MediaWiki uses (normally == secret)
    version: str          # wiki_dbs.version
    dbuser: str
    dbpassword: str
    deleted: bool = False     # wikis.deleted_at set
    db_exists: bool = True    # mwdb_ database created (False: listed, but no database)
    mw_known: bool = True     # MediaWiki serves this Host (False: 404 "no such wiki")
    read_only: str = ""       # $wgReadOnly reason, "" = writable
    sitename: str = ""
    db_server: str = None     # the name of its Farm.add_db_server server; None: the main one

    @property
    def job_table(self):
        return "`%s`.`%s_job`" % (self.dbname, self.prefix)

    def table(self, name):
        return "`%s`.`%s_%s`" % (self.dbname, self.prefix, name)


def mw_version():
    """MW_VERSION of the MediaWiki the farm serves, e.g. '1.43.9' (None if unreadable)."""
    try:
        with open(os.path.join(MW_DIR, "includes", "Defines.php")) as f:
            m = re.search(r"define\( *'MW_VERSION', *'([^']+)'", f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def mw_at_least(series):
    """Whether the farm's MediaWiki is `series` (e.g. "1.43") or newer."""
    have = tuple(int(x) for x in MW_SERIES.split("."))
    return have >= tuple(int(x) for x in series.split("."))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def php_urlencode(s):
    """PHP urlencode(): keeps A-Za-z0-9_.-, space becomes '+', the rest %XX uppercase."""
    return urllib.parse.quote_plus(str(s), safe="").replace("~", "%7E")


def runjobs_signature(params, secret):
    """MediaWiki's Special:RunJobs signature over every field but `signature`."""
    items = sorted((k, v) for k, v in params.items() if k != "signature")
    data = "&".join("%s=%s" % (php_urlencode(k), php_urlencode(v)) for k, v in items)
    return hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest()


def runjobs_fields(secret, maxjobs=100, maxtime=30, expiry_in=30, now=None, **extra):
    """The signed form fields of a synchronous Special:RunJobs POST."""
    now = int(time.time() if now is None else now)
    fields = {"title": "Special:RunJobs", "tasks": "jobs", "maxjobs": str(maxjobs),
              "maxtime": str(maxtime), "async": "0", "stats": "1",
              "sigexpiry": str(now + expiry_in)}
    fields.update({k: str(v) for k, v in extra.items()})
    fields["signature"] = runjobs_signature(fields, secret)
    return fields


def _php_str(s):
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return "(no %s)" % path


def _proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def _proc_stat(pid):
    """(state, pgrp) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[2])
    except (OSError, IndexError, ValueError):
        return None


def _run(argv, input=None, timeout=None, **kw):
    """subprocess.run() in a process group of its own that is killed whole if we are
    interrupted (mariadb-install-db runs a bootstrap mariadbd that would outlive it)."""
    if input is None:
        kw.setdefault("stdin", subprocess.DEVNULL)
    else:
        kw["stdin"] = subprocess.PIPE
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    with subprocess.Popen(argv, start_new_session=True, **kw) as p:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except BaseException:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def _wait_for(what, check, timeout, proc=None, log=None, interval=0.05):
    """Poll check() until it returns a true value; fail early if proc exits."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - readiness probes fail in many ways
            last = e
        if proc is not None and proc.poll() is not None:
            raise FarmError("%s: process exited with %s before it was ready\n%s"
                            % (what, proc.returncode, _tail(log) if log else ""))
        if time.monotonic() > deadline:
            raise FarmError("%s: not ready after %.0fs (last error: %r)\n%s"
                            % (what, timeout, last, _tail(log) if log else ""))
        time.sleep(interval)


class Farm:
    """A wiki farm in directory `dir`. See the module docstring."""

    def __init__(self, dir=None, binlog_format=None):
        """binlog_format: None (the default: no binary log), or "ROW", "MIXED" or
        "STATEMENT" to start mariadbd with log_bin (DIR/mysql-data/binlog.*), that
        format and server_id 1, as a primary with replicas runs."""
        if dir is None:
            dir = tempfile.mkdtemp(prefix="jdfarm-", dir="/tmp")
        if binlog_format not in (None, "ROW", "MIXED", "STATEMENT"):
            raise FarmError("binlog_format %r: ROW, MIXED, STATEMENT or None"
                            % (binlog_format,))
        self.binlog_format = binlog_format
        self.dir = os.path.abspath(dir)
        self.mysql_port = None
        self.http_port = None
        self.wikis = {}          # domain -> Wiki
        self._procs = {}         # name -> Popen, for processes this object spawned
        self._conn = None
        self.db_servers = {}     # name -> DbServer (add_db_server)
        self._server_conns = {}  # name -> root connection to that server (sql)

    # ---- paths -------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def socket(self):
        return self.path("mysql.sock")

    @property
    def access_log(self):
        return self.path("logs", "access.log")

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.http_port

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, wikis=0, prefix="wiki", suffix=".farm.test"):
        """Start MariaDB and Apache, create `wikis` wikis (wiki1.farm.test, ...)."""
        try:
            self._prepare_dir()
            self._start_mysql()
            self._create_platform()
            self._install_template()
            self._write_settings()
            self._start_apache()
            for i in range(1, wikis + 1):
                self.add_wiki("%s%d%s" % (prefix, i, suffix))
            if self.wikis:
                self._warm_up(next(iter(self.wikis)))
            self._save()
        except BaseException:
            try:
                self.stop()
            except Exception as e:  # noqa: BLE001 - keep the original error
                print("farm: stop after failed start: %s" % e, file=sys.stderr)
            raise
        return self

    def stop(self):
        """Terminate every process of the farm (pid files in DIR/pids). Idempotent."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
        self._close_server_conns()
        errors = []
        for name in ["apache2", "mariadbd"] + self._db_server_services():
            try:
                self._stop_service(name)
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                errors.append("%s: %s" % (name, e))
        if errors:
            raise FarmError("stop: " + "; ".join(errors))

    def _db_server_services(self):
        """mariadbd-<name> of every add_db_server server with a pid file, listed in
        farm.json or not: an add_db_server that failed half-way leaves its mariadbd running
        before the farm records the server."""
        try:
            files = os.listdir(self.path("pids"))
        except FileNotFoundError:
            return []
        return sorted(f[:-len(".pid")] for f in files
                      if f.startswith("mariadbd-") and f.endswith(".pid"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    @classmethod
    def load(cls, dir):
        """Reattach to a farm started elsewhere (reads DIR/farm.json)."""
        farm = cls(dir)
        with open(farm.path("farm.json")) as f:
            desc = json.load(f)
        farm.mysql_port = desc["mysql"]["port"]
        farm.binlog_format = desc["mysql"].get("binlog_format")
        farm.http_port = desc["http"]["port"]
        for w in desc["wikis"]:
            farm.wikis[w["domain"]] = Wiki(**w)
        for d in desc.get("db_servers", []):
            farm.db_servers[d["name"]] = DbServer(**d)
        return farm

    def describe(self):
        """What farm.json holds."""
        return {
            "dir": self.dir,
            "mysql": {
                "host": "127.0.0.1", "port": self.mysql_port, "socket": self.socket,
                "root_user": "root", "root_password": "",
                "sidecar_user": SIDECAR_USER, "sidecar_password": SIDECAR_PASSWORD,
                "mediawiki_user": MW_USER, "mediawiki_password": MW_PASSWORD,
                "platform_db": PLATFORM_DB, "coordination_db": COORD_DB,
                "log": self.path("logs", "mysql.err"),
                "binlog_format": self.binlog_format,
            },
            "http": {
                "host": "127.0.0.1", "port": self.http_port,
                "base_url": self.base_url if self.http_port else None,
                "runjobs_path": "/w/index.php", "max_workers": MAX_WORKERS,
                "php_max_execution_time": 30,
            },
            "logs": {
                "access": self.access_log,
                "apache_error": self.path("logs", "apache-error.log"),
                "mysql": self.path("logs", "mysql.err"),
                "mw_exception": self.path("logs", "mw-exception.log"),
                "probe": self.path("logs", "probe.jsonl"),
            },
            "access_log": self.access_log,
            "access_log_fields": ["start", "host", "request", "status", "duration_us",
                                  "bytes", "pid", "user_agent"],
            "mediawiki": {"install_path": MW_DIR, "series": MW_SERIES,
                          "version": mw_version(),
                          "settings": self.path("LocalSettings.php"),
                          "default_version": DEFAULT_VERSION},
            "pids": {n: self._read_pid(n) for n in ["mariadbd", "apache2"] +
                     ["mariadbd-" + n for n in self.db_servers]},
            "wikis": [dataclasses.asdict(w) for w in self.wikis.values()],
            "db_servers": [dataclasses.asdict(d) for d in self.db_servers.values()],
        }

    def _save(self):
        self._write_atomic(self.path("farm.json"),
                           json.dumps(self.describe(), indent=2) + "\n")

    # ---- directory and processes ---------------------------------------------------------------

    def _prepare_dir(self):
        if len(self.socket) > 100:
            raise FarmError("farm dir path too long for a unix socket: %s" % self.dir)
        if not os.path.isfile(os.path.join(MW_DIR, "maintenance", "install.php")):
            raise FarmError("no MediaWiki %s in %s: run scripts/fetch-mediawiki.sh %s "
                            "(or scripts/install-deps.sh for 1.39)"
                            % (MW_SERIES, MW_DIR, MW_SERIES))
        os.makedirs(self.dir, exist_ok=True)
        if os.path.exists(self.path("mysql-data")):
            raise FarmError("%s already holds a farm; use Farm.load() or a new dir" % self.dir)
        # Apache's workers run as www-data: the farm dir and its parents must be
        # traversable by others (pytest's tmp_path is not: /tmp/pytest-of-root is 0700).
        os.chmod(self.dir, 0o755)
        d = self.dir
        while d != "/":
            d = os.path.dirname(d)
            if not os.stat(d).st_mode & 0o001:
                raise FarmError("%s is not traversable by www-data (Apache's workers): "
                                "use a farm dir whose parents are o+x, e.g. under /tmp "
                                "via tempfile.mkdtemp()" % d)
        for sub, mode in (("pids", 0o755), ("logs", 0o755), ("run", 0o755),
                          ("wikis", 0o755), ("htdocs", 0o755),
                          ("cache", 0o1777), ("tmp", 0o1777)):
            os.makedirs(self.path(sub), exist_ok=True)
            os.chmod(self.path(sub), mode)
        # Files PHP appends to, both as www-data (web) and as root (CLI).
        for log in ("mw-exception.log", "mw-error.log", "probe.jsonl"):
            p = self.path("logs", log)
            open(p, "a").close()
            os.chmod(p, 0o666)

    def _spawn(self, name, argv):
        out = open(self.path("logs", name + ".out"), "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, cwd=self.dir)
        finally:
            out.close()
        # Recorded before anything waits on it: stop() can always find it.
        self._write_atomic(self.path("pids", name + ".pid"), "%d\n" % proc.pid)
        self._procs[name] = proc
        return proc

    def _read_pid(self, name):
        try:
            with open(self.path("pids", name + ".pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _members(self, pgid):
        """Live processes of process group pgid that belong to this farm."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            st = _proc_stat(pid)
            if st is None or st[1] != pgid or st[0] == "Z":
                continue
            cmd = _proc_cmdline(pid)
            if cmd and self.dir in cmd:
                found.append(pid)
        return found

    def _stop_service(self, name):
        pgid = self._read_pid(name)
        proc = self._procs.pop(name, None)
        if pgid is None:
            return
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            pids = self._members(pgid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if proc is not None:
                    proc.poll()  # reap our own child so it is not left a zombie
                if not self._members(pgid):
                    break
                time.sleep(0.05)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        left = self._members(pgid)
        if left:
            raise FarmError("%s: processes %s survived SIGKILL" % (name, left))
        os.unlink(self.path("pids", name + ".pid"))

    @staticmethod
    def _write_atomic(path, text, mode=0o644):
        tmp = "%s.tmp%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    # ---- MariaDB -------------------------------------------------------------------------

    def _mysqld_args(self):
        args = ["--innodb-buffer-pool-size=128M", "--innodb-log-file-size=32M",
                "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0",
                "--performance-schema=OFF", "--skip-name-resolve",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=500", "--max-allowed-packet=64M"]
        if self.binlog_format:
            args += ["--log-bin=binlog", "--binlog-format=" + self.binlog_format,
                     "--server-id=1"]
        return args

    @staticmethod
    def _mariadbd_file_tag(name):
        """Its pid file and logs: mysql.* for the main server (mariadbd), mysql-<name>.*
        for an add_db_server server (mariadbd-<name>)."""
        return "mysql" if name == "mariadbd" else "mysql-" + name[len("mariadbd-"):]

    def _mariadbd_argv(self, datadir, socket, port, name):
        """mariadbd on datadir, listening on socket and 127.0.0.1:port; its pid file and
        error log named after the service (mariadbd: the main server's old names)."""
        tag = self._mariadbd_file_tag(name)
        root = ["--user=root"] if os.geteuid() == 0 else []
        return ["mariadbd", "--no-defaults", "--datadir=" + datadir, "--socket=" + socket,
                "--port=%d" % port, "--bind-address=127.0.0.1",
                "--pid-file=" + self.path(tag + ".pid"),
                "--log-error=" + self.path("logs", tag + ".err"),
                "--tmpdir=" + self._mariadbd_tmpdir(tag)] + root + self._mysqld_args()

    def _mariadbd_tmpdir(self, tag):
        """A temporary directory of the service's own. A starting mariadbd (and the
        bootstrap one of mariadb-install-db) deletes every #sql* file in its tmpdir: in
        a shared one (/tmp, the install's default, or one for all of a farm's servers) it
        deleted the temporary tables of another server still bootstrapping, whose install
        then failed ("Unknown table 'mysql.tmp_user_sys'"), as soon as farms started
        side by side (parallel test modules, other test runs on the machine)."""
        d = self.path("tmp", tag)
        os.makedirs(d, exist_ok=True)
        return d

    def _start_mariadbd(self, name, datadir, socket):
        """Initialises datadir and starts mariadbd service `name` on a free port;
        returns the port."""
        tag = self._mariadbd_file_tag(name)
        root = ["--user=root"] if os.geteuid() == 0 else []
        with open(self.path("logs", tag + "-install.log"), "wb") as log:
            r = _run(["mariadb-install-db", "--no-defaults", "--datadir=" + datadir,
                      "--auth-root-authentication-method=normal",
                      "--tmpdir=" + self._mariadbd_tmpdir(tag),
                      "--skip-test-db"] + root + self._mysqld_args(),
                     stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            # 60 lines: the tool's own advice takes the last 25, the error comes before
            # it (and the farm's directory, with the log, is removed after a failure).
            raise FarmError("mariadb-install-db failed:\n" +
                            _tail(self.path("logs", tag + "-install.log"), 60))
        errlog = self.path("logs", tag + ".err")
        for attempt in range(3):
            port = free_port()
            proc = self._spawn(name, self._mariadbd_argv(datadir, socket, port, name))
            try:
                _wait_for(name, lambda: self._root_conn(socket=socket).close() or True,
                          START_TIMEOUT, proc, errlog)
                return port
            except FarmError:
                if attempt < 2 and "already in use" in _tail(errlog, 10):
                    self._stop_service(name)  # lost the port race: try another
                    continue
                raise

    def _start_mysql(self):
        self.mysql_port = self._start_mariadbd("mariadbd", self.path("mysql-data"),
                                               self.socket)

    def _root_conn(self, db=None, socket=None):
        return pymysql.connect(unix_socket=socket or self.socket, user="root", password="",
                               database=db, autocommit=True, charset="utf8mb4",
                               connect_timeout=5)

    def sql(self, query, args=None, db=None, server=None):
        """Run one statement as root (socket) on the main server, or on the add_db_server
        server named `server`; returns all rows as tuples. Uses one cached connection per
        server: not for use from several threads at once."""
        with self._server_conn(server).cursor() as cur:
            cur.execute("USE `%s`" % (db or "mysql"))
            cur.execute(query, args)
            return cur.fetchall()

    def _server_conn(self, server):
        if server is None:
            if self._conn is None:
                self._conn = self._root_conn()
            else:
                self._conn.ping(reconnect=True)
            return self._conn
        conn = self._server_conns.get(server)
        if conn is None:
            conn = self._server_conns[server] = self._root_conn(
                socket=self.db_server(server).socket)
        else:
            conn.ping(reconnect=True)
        return conn

    def _close_server_conns(self, only=None):
        for name in [only] if only else list(self._server_conns):
            conn = self._server_conns.pop(name, None)
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def db_server(self, name):
        try:
            return self.db_servers[name]
        except KeyError:
            raise FarmError("no database server %s in this farm" % name) from None

    def add_db_server(self, name="db2"):
        """Start another MariaDB server for wikis of their own (add_wiki(db_server=name)),
        as farms spread wiki databases over several servers. It gets the sidecar's scan
        grant, MediaWiki's user and the template wiki; returns its DbServer."""
        if name in self.db_servers or not re.fullmatch(r"[a-z0-9]+", name):
            raise FarmError("database server name %r: taken or not [a-z0-9]+" % name)
        socket = self.path("mysql-%s.sock" % name)
        port = self._start_mariadbd("mariadbd-" + name, self.path("mysql-data-" + name),
                                    socket)
        d = self.db_servers[name] = DbServer(name=name, port=port, socket=socket)
        for host in ("127.0.0.1", "localhost"):
            for stmt in (
                "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (SIDECAR_USER, host, SIDECAR_PASSWORD),
                "GRANT SELECT ON `mwdb\\_%%`.* TO '%s'@'%s'" % (SIDECAR_USER, host),
                "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (MW_USER, host, MW_PASSWORD),
                "GRANT ALL ON *.* TO '%s'@'%s' WITH GRANT OPTION" % (MW_USER, host),
            ):
                self.sql(stmt.replace("%%", "%"), server=name)
        # The template wiki, copied table by table: add_wiki clones it on this server.
        self.sql("CREATE DATABASE `%s` DEFAULT CHARACTER SET binary" % TEMPLATE_DB,
                 server=name)
        for t in self._template_table_names():
            table = "`%s`.`%s_%s`" % (TEMPLATE_DB, TEMPLATE_PREFIX, t)
            create = self.sql("SHOW CREATE TABLE %s" % table)[0][1]
            self.sql(create, db=TEMPLATE_DB, server=name)
            if t in CLONE_SKIP_ROWS:
                continue
            rows = self.sql("SELECT * FROM %s" % table)
            if rows:
                marks = ", ".join(["%s"] * len(rows[0]))
                with self._server_conn(name).cursor() as cur:
                    cur.executemany("INSERT INTO %s VALUES (%s)" % (table, marks), rows)
        self._save()
        return d

    def kill_db_server(self, name):
        """SIGKILL an add_db_server server, as a crash would."""
        self._close_server_conns(name)
        self._kill_service("mariadbd-" + name)

    def restart_db_server(self, name):
        """Start an add_db_server server again on its data directory and port."""
        d = self.db_server(name)
        self._restart_mariadbd("mariadbd-" + name, self.path("mysql-data-" + name), d.socket,
                               d.port, self.path("logs", "mysql-%s.err" % name))

    def _create_platform(self):
        for stmt in PLATFORM_SQL:
            self.sql(stmt)
        # Not wbstack's: the server of a wiki on an add_db_server server, for discovery
        # queries that return the optional fifth column.
        self.sql("CREATE TABLE farm_wiki_servers (wiki_id BIGINT UNSIGNED PRIMARY KEY, "
                 "server VARCHAR(255) NOT NULL)", db=PLATFORM_DB)
        for host in ("127.0.0.1", "localhost"):
            for stmt in (
                "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (SIDECAR_USER, host, SIDECAR_PASSWORD),
                "GRANT SELECT ON `%s`.* TO '%s'@'%s'" % (PLATFORM_DB, SIDECAR_USER, host),
                "GRANT SELECT ON `mwdb\\_%%`.* TO '%s'@'%s'" % (SIDECAR_USER, host),
                "GRANT ALL ON `%s`.* TO '%s'@'%s'" % (COORD_DB, SIDECAR_USER, host),
                "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (MW_USER, host, MW_PASSWORD),
                "GRANT ALL ON *.* TO '%s'@'%s' WITH GRANT OPTION" % (MW_USER, host),
            ):
                self.sql(stmt.replace("%%", "%"))

    # ---- MediaWiki -------------------------------------------------------------------------------

    def _install_template(self):
        """install.php once, into farm_template; wikis are cloned from it by SQL."""
        conf = self.path("tmp", "template-install")
        os.makedirs(conf, exist_ok=True)
        env = dict(os.environ)
        # install.php refuses to run when it finds a LocalSettings.php (Debian links one
        # into /usr/share/mediawiki): point MW_CONFIG_FILE at a file that does not exist.
        env["MW_CONFIG_FILE"] = os.path.join(conf, "absent-LocalSettings.php")
        env.pop("WBS_DOMAIN", None)
        t0 = time.monotonic()
        r = _run(
            [PHP_BIN, MW_DIR + "/maintenance/install.php", "--dbtype=mysql",
             "--dbserver=127.0.0.1:%d" % self.mysql_port, "--dbname=" + TEMPLATE_DB,
             "--dbprefix=" + TEMPLATE_PREFIX + "_", "--dbuser=" + MW_USER,
             "--dbpass=" + MW_PASSWORD, "--installdbuser=" + MW_USER,
             "--installdbpass=" + MW_PASSWORD, "--server=http://template.farm.invalid",
             "--scriptpath=/w", "--confpath=" + conf, "--lang=en",
             "--pass=" + ADMIN_PASSWORD, "Farm template", ADMIN_USER],
            env=env, text=True)
        self.template_install_seconds = time.monotonic() - t0
        with open(self.path("logs", "template-install.log"), "w") as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0 or "successfully installed" not in r.stdout:
            raise FarmError("install.php failed (rc %d):\n%s%s"
                            % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        rows = self.sql("SELECT table_name, engine FROM information_schema.tables "
                        "WHERE table_schema = %s ORDER BY table_name", (TEMPLATE_DB,))
        self._template_tables = [name[len(TEMPLATE_PREFIX) + 1:] for name, _ in rows]
        if "job" not in self._template_tables or "searchindex" not in self._template_tables:
            raise FarmError("template wiki lacks tables: %s" % self._template_tables)

    def _template_table_names(self):
        tables = getattr(self, "_template_tables", None)
        if tables is None:  # a loaded farm: read the template's tables again
            rows = self.sql("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = %s", (TEMPLATE_DB,))
            tables = self._template_tables = [r[0][len(TEMPLATE_PREFIX) + 1:] for r in rows]
        return tables

    def _clone_template(self, dbname, prefix, server=None):
        """The template wiki's tables as dbname.prefix_*, on the main server or on the
        add_db_server server `server` (which holds a copy of the template)."""
        tables = self._template_table_names()
        self.sql("CREATE DATABASE `%s` DEFAULT CHARACTER SET binary" % dbname, server=server)
        for t in tables:
            src = "`%s`.`%s_%s`" % (TEMPLATE_DB, TEMPLATE_PREFIX, t)
            dst = "`%s`.`%s_%s`" % (dbname, prefix, t)
            # keeps engine and indexes
            self.sql("CREATE TABLE %s LIKE %s" % (dst, src), server=server)
            if t not in CLONE_SKIP_ROWS:
                self.sql("INSERT INTO %s SELECT * FROM %s" % (dst, src), server=server)
        n = self.sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema=%s",
                     (dbname,), server=server)[0][0]
        if n != len(tables):
            raise FarmError("clone of %s: %d tables, template has %d" % (dbname, n, len(tables)))

    def _write_settings(self):
        text = LOCAL_SETTINGS.replace("@FARM_DIR@", _php_str(self.dir)) \
                             .replace("@DB_SERVER@", _php_str("127.0.0.1:%d" % self.mysql_port))
        self._write_atomic(self.path("LocalSettings.php"), text)

    def _write_wiki_file(self, w):
        path = self.path("wikis", w.domain + ".json")
        if not w.mw_known:
            if os.path.exists(path):
                os.unlink(path)
            return
        info = {"dbname": w.dbname, "prefix": w.prefix, "dbuser": w.dbuser,
                "dbpassword": w.dbpassword, "secret": w.mw_secret,
                "sitename": w.sitename or w.domain, "read_only": w.read_only}
        if w.db_server is not None:
            info["dbserver"] = self.db_server(w.db_server).address
        # Holds a DB password and a secret: readable by www-data's group only.
        self._write_atomic(path, json.dumps(info) + "\n", mode=0o640)
        if os.geteuid() == 0:
            os.chown(path, 0, _www_data_gid())

    # ---- Apache --------------------------------------------------------------------------------

    def _start_apache(self):
        errlog = self.path("logs", "apache-error.log")
        for attempt in range(3):
            self.http_port = free_port()
            self._write_atomic(self.path("httpd.conf"), self._httpd_conf())
            r = _run([APACHE_BIN, "-t", "-f", self.path("httpd.conf")], text=True)
            if r.returncode != 0:
                raise FarmError("apache2 -t: %s%s" % (r.stdout, r.stderr))
            proc = self._spawn("apache2", [APACHE_BIN, "-f", self.path("httpd.conf"),
                                           "-DFOREGROUND"])
            try:
                status, body = _wait_for(
                    "apache2", lambda: self.http("GET", "/w/index.php",
                                                 host="farm-readiness.invalid", timeout=5),
                    START_TIMEOUT, proc, errlog)
                break
            except FarmError:
                if attempt < 2 and "in use" in _tail(errlog, 10) + \
                        _tail(self.path("logs", "apache2.out"), 10):
                    self._stop_service("apache2")
                    continue
                raise
        if status != 404 or b"no such wiki" not in body:
            raise FarmError("MediaWiki did not answer an unknown Host with 404 "
                            "'no such wiki' but %d:\n%s\n%s"
                            % (status, body[:2000].decode("utf-8", "replace"), _tail(errlog)))

    def _httpd_conf(self):
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        return HTTPD_CONF.format(dir=self.dir, port=self.http_port, mods=APACHE_MODULES,
                                 php=PHP_MODULE, mw=MW_DIR, user=user, workers=MAX_WORKERS)

    def http(self, method, path, host, body=None, headers=None, timeout=60):
        """One request to the farm's Apache with the given Host; returns (status, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            h = {"Host": host, "User-Agent": "jobdrainer-farm"}
            if body is not None:
                if isinstance(body, dict):
                    body = urllib.parse.urlencode(body)
                h["Content-Type"] = "application/x-www-form-urlencoded"
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def runjobs(self, domain, maxjobs=100, maxtime=30, secret=None, timeout=120, **extra):
        """POST a signed, synchronous Special:RunJobs, as the sidecar does.

        Returns (status, parsed JSON or raw body). secret defaults to the platform's."""
        w = self.wikis[domain]
        fields = runjobs_fields(secret if secret is not None else w.secret,
                                maxjobs=maxjobs, maxtime=maxtime, **extra)
        status, body = self.http("POST", "/w/index.php", domain, body=fields, timeout=timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def _warm_up(self, domain):
        """First request per PHP user builds the l10n cache; pay that at start."""
        status, body = self.http("GET", "/w/index.php?title=Special:BlankPage", domain)
        if status != 200:
            raise FarmError("warm-up of %s: HTTP %d\n%s\n%s"
                            % (domain, status, body[:2000].decode("utf-8", "replace"),
                               _tail(self.path("logs", "apache-error.log"))))

    # ---- wikis -------------------------------------------------------------------------------

    def add_wiki(self, domain, deleted=False, secret=None, mw_secret=None, create_db=True,
                 mw_known=None, version=DEFAULT_VERSION, sitename=None, read_only="",
                 db_server=None):
        """Create a wiki the wbaas way: apidb rows + database + MediaWiki's view of it.

        secret:    platform wgSecretKey (random 64 hex by default);
        mw_secret: the $wgSecretKey MediaWiki gets (default: the same) - "wrong secret" tests;
        create_db: False lists the wiki in apidb but creates no mwdb_ database;
        mw_known:  whether MediaWiki serves this Host (default: not deleted, as wbstack's
                   API hides soft-deleted wikis from MediaWiki);
        db_server: the add_db_server server holding its database (None: the main one);
                   recorded in apidb.farm_wiki_servers for discovery's fifth column."""
        domain = domain.lower()
        if domain in self.wikis:
            raise FarmError("wiki %s exists" % domain)
        if not _valid_domain(domain):
            raise FarmError("bad domain %r" % domain)
        secret = secret if secret is not None else secrets.token_hex(32)
        w = Wiki(domain=domain, wiki_id=0, dbname="mwdb_" + secrets.token_hex(5),
                 prefix="mwt_" + secrets.token_hex(5), secret=secret,
                 mw_secret=mw_secret if mw_secret is not None else secret,
                 version=version, dbuser="mwu_" + secrets.token_hex(5),
                 dbpassword=secrets.token_hex(12), deleted=deleted, db_exists=create_db,
                 mw_known=(not deleted) if mw_known is None else mw_known,
                 read_only=read_only, sitename=sitename or domain, db_server=db_server)
        if db_server is not None:
            self.db_server(db_server)
        if create_db:
            self._clone_template(w.dbname, w.prefix, server=db_server)
        for host in ("127.0.0.1", "localhost"):
            self.sql("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'" % (w.dbuser, host, w.dbpassword),
                     server=db_server)
            self.sql("GRANT ALL ON `%s`.* TO '%s'@'%s'" % (w.dbname, w.dbuser, host),
                     server=db_server)
        self.sql("INSERT INTO wikis (domain, sitename, deleted_at, created_at, updated_at) "
                 "VALUES (%s, %s, IF(%s, NOW(), NULL), NOW(), NOW())",
                 (w.domain, w.sitename, deleted), db=PLATFORM_DB)
        w.wiki_id = self.sql("SELECT LAST_INSERT_ID()")[0][0]
        self.sql("INSERT INTO wiki_dbs (name, prefix, user, password, version, wiki_id, "
                 "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, NOW(), NOW())",
                 (w.dbname, w.prefix, w.dbuser, w.dbpassword, w.version, w.wiki_id),
                 db=PLATFORM_DB)
        self.sql("INSERT INTO wiki_settings (name, value, wiki_id, created_at, updated_at) "
                 "VALUES ('wgSecretKey', %s, %s, NOW(), NOW())", (w.secret, w.wiki_id),
                 db=PLATFORM_DB)
        if db_server is not None:
            self.sql("INSERT INTO farm_wiki_servers (wiki_id, server) VALUES (%s, %s)",
                     (w.wiki_id, self.db_server(db_server).address), db=PLATFORM_DB)
        self._write_wiki_file(w)
        self.wikis[domain] = w
        self._save()
        return w

    def add_unassigned_db(self, version=DEFAULT_VERSION):
        """A pre-provisioned wiki_dbs row with wiki_id NULL, as wbaas keeps a pool of them."""
        dbname, prefix = "mwdb_" + secrets.token_hex(5), "mwt_" + secrets.token_hex(5)
        self._clone_template(dbname, prefix)
        self.sql("INSERT INTO wiki_dbs (name, prefix, user, password, version, wiki_id, "
                 "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, NULL, NOW(), NOW())",
                 (dbname, prefix, "mwu_" + secrets.token_hex(5), secrets.token_hex(12),
                  version), db=PLATFORM_DB)
        return dbname, prefix

    def wiki(self, domain):
        try:
            return self.wikis[domain]
        except KeyError:
            raise FarmError("no wiki %s in this farm" % domain) from None

    def set_deleted(self, domain, deleted=True, mw_known=None):
        """Soft-delete (or undelete) a wiki in apidb; MediaWiki forgets it too by default."""
        w = self.wiki(domain)
        self.sql("UPDATE wikis SET deleted_at = IF(%s, NOW(), NULL), updated_at = NOW() "
                 "WHERE id = %s", (deleted, w.wiki_id), db=PLATFORM_DB)
        w.deleted = deleted
        w.mw_known = (not deleted) if mw_known is None else mw_known
        self._write_wiki_file(w)
        self._save()

    def set_read_only(self, domain, reason="farm test: read-only"):
        """$wgReadOnly for one wiki (RunJobs then answers 423); reason "" makes it writable."""
        w = self.wiki(domain)
        w.read_only = reason or ""
        self._write_wiki_file(w)
        self._save()

    def set_mw_secret(self, domain, mw_secret):
        """Give MediaWiki another $wgSecretKey than the platform holds (or the same again)."""
        w = self.wiki(domain)
        w.mw_secret = mw_secret
        self._write_wiki_file(w)
        self._save()

    def set_settings_override(self, php=None):
        """PHP statements run after the farm's settings for every wiki, web and CLI (DIR/
        LocalSettings.override.php), e.g. "$wgJobRunRate = 2;"; None removes them.
        Apache's opcache revalidates files every 2 s: wait that long before relying on it."""
        path = self.path("LocalSettings.override.php")
        if php is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        self._write_atomic(path, "<?php\n// Written by Farm.set_settings_override()\n%s\n" % php)

    # ---- jobs ----------------------------------------------------------------------------------

    def php_env(self, domain):
        env = dict(os.environ)
        env["MW_CONFIG_FILE"] = self.path("LocalSettings.php")
        env["MW_INSTALL_PATH"] = MW_DIR
        env["WBS_DOMAIN"] = domain
        return env

    def maintenance(self, domain, script, *args, input=None, check=True, timeout=600):
        """Run a maintenance script for one wiki (script: a name under MediaWiki's
        maintenance/ or a path). Returns the CompletedProcess (text)."""
        self.wiki(domain)
        path = script if os.sep in script else os.path.join(MW_DIR, "maintenance", script)
        r = _run([PHP_BIN, path] + [str(a) for a in args], env=self.php_env(domain),
                 input=input, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise FarmError("%s %s for %s failed (rc %d):\n%s%s"
                            % (os.path.basename(path), " ".join(map(str, args)), domain,
                               r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def push_null_jobs(self, domain, count, usleep_us=0):
        """Push `count` NullJobs (each sleeps usleep_us when run) through JobQueueGroup."""
        self.maintenance(domain, os.path.join(HERE, "pushJobs.php"), "--count", count,
                         "--usleep", usleep_us)

    def push_probe_jobs(self, domain, count, usleep_us=0, tag="", spin_us=0):
        """Push `count` farmProbe jobs: each sleeps usleep_us, burns spin_us of CPU, and
        appends {domain, tag, seq, pushed, ran, pid, sapi} to DIR/logs/probe.jsonl
        (see probe_runs()). Only CPU time counts against PHP's max_execution_time."""
        self.maintenance(domain, os.path.join(HERE, "pushJobs.php"), "--count", count,
                         "--usleep", usleep_us, "--spin", spin_us, "--type", "farmProbe",
                         "--tag", tag)

    def probe_runs(self):
        """Every probe job run so far, as dicts (ran - pushed = queue latency, seconds)."""
        with open(self.path("logs", "probe.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def insert_raw_jobs(self, domain, count, cmd="farmNoSuchJob"):
        """Insert ready rows of a type MediaWiki has no class for: they never run, RunJobs
        answers none-ready while they sit there (an uninstalled extension's jobs)."""
        self._insert_job_rows(domain, cmd, [b"a:0:{}"] * count, time.time())

    def _insert_job_rows(self, domain, cmd, params, queued):
        """Inserts ready job rows of type cmd (one per serialized params blob), queued at
        unix time `queued`, as JobQueueDB stores them."""
        w = self.wiki(domain)
        ts = time.strftime("%Y%m%d%H%M%S", time.gmtime(queued))
        rows = [(cmd, -1, "Blankpage", ts, p, secrets.randbits(31), secrets.token_hex(16))
                for p in params]
        with self._server_conn(w.db_server).cursor() as cur:
            cur.executemany(
                "INSERT INTO %s (job_cmd, job_namespace, job_title, job_timestamp, "
                "job_params, job_random, job_sha1) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s)"
                % w.job_table, rows)

    def insert_probe_jobs(self, domain, count, tag="", queued=None, usleep_us=0, seq0=0):
        """Queue `count` farmProbe jobs by SQL, as JobQueueDB would store them (fast:
        no PHP start-up per push, for tests that queue jobs on many wikis often).
        Each records its queue time in its params; probe_runs() shows when it ran.
        queued: their unix queue time (default now; earlier for jobs already waiting).
        usleep_us: how long each waits when run (an I/O-bound job); seq0: the first
        job's seq (a bot queuing in rounds numbers its jobs on)."""
        now = time.time() if queued is None else queued
        params = [_php_serialize({"tag": tag, "seq": seq, "pushed": now, "usleep": usleep_us})
                  .encode() for seq in range(seq0, seq0 + count)]
        self._insert_job_rows(domain, "farmProbe", params, now)

    def kill_mysql(self):
        """SIGKILL mariadbd, as a crash would: no clean shutdown."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
        self._kill_service("mariadbd")

    def _kill_service(self, name):
        pgid = self._read_pid(name)
        for pid in self._members(pgid):
            os.kill(pid, signal.SIGKILL)
        _wait_for(name + " to die", lambda: not self._members(pgid), 20)
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.wait(timeout=5)
        os.unlink(self.path("pids", name + ".pid"))

    def restart_mysql(self):
        """Start mariadbd again on the same data directory and port (after kill_mysql)."""
        self._restart_mariadbd("mariadbd", self.path("mysql-data"), self.socket,
                               self.mysql_port, self.path("logs", "mysql.err"))

    def _restart_mariadbd(self, name, datadir, socket, port, errlog):
        proc = self._spawn(name, self._mariadbd_argv(datadir, socket, port, name))
        _wait_for(name, lambda: self._root_conn(socket=socket).close() or True,
                  START_TIMEOUT, proc, errlog)

    def edit(self, domain, title, text, summary="farm edit"):
        """A real edit through maintenance/edit.php (queues real jobs as MediaWiki does)."""
        self.maintenance(domain, "edit.php", "--summary", summary, title, input=text)

    def make_link_jobs(self, domain, pages=5, template="FarmLinks"):
        """Queue real refreshLinks jobs whose effect is checkable.

        Creates Template:<template> linking to <template>Old, `pages` pages that
        transclude it, then edits the template to link to <template>New. Until the
        refreshLinks jobs run, the pages still link to the old target. Check with
        links_to(domain, result['new_target']) == result['pages']."""
        tpl = "Template:" + template
        old, new = template + "Old", template + "New"
        self.edit(domain, tpl, "See [[%s]]." % old)
        names = ["%s page %d" % (template, i) for i in range(1, pages + 1)]
        for name in names:
            self.edit(domain, name, "{{%s}} and [[%s]]" % (template, template + "Target"))
        self.edit(domain, tpl, "See [[%s]]." % new)
        return {"template": tpl, "pages": sorted(n.replace(" ", "_") for n in names),
                "old_target": old, "new_target": new}

    def links_to(self, domain, title, namespace=0, from_namespace=0):
        """Titles (db form) of pages in from_namespace whose pagelinks point to
        namespace:title (from_namespace=None: pages of every namespace)."""
        w = self.wiki(domain)
        if self._has_column(w, "pagelinks", "pl_target_id"):
            # MediaWiki 1.43 (PageLinksSchemaMigrationStage = SCHEMA_COMPAT_NEW): a link
            # row names its target through linktarget, like templatelinks since 1.39.
            q = ("SELECT p.page_title FROM %s pl JOIN %s lt ON lt.lt_id = pl.pl_target_id "
                 "JOIN %s p ON p.page_id = pl.pl_from "
                 "WHERE lt.lt_namespace = %%s AND lt.lt_title = %%s"
                 % (w.table("pagelinks"), w.table("linktarget"), w.table("page")))
        else:
            q = ("SELECT p.page_title FROM %s pl JOIN %s p ON p.page_id = pl.pl_from "
                 "WHERE pl.pl_namespace = %%s AND pl.pl_title = %%s"
                 % (w.table("pagelinks"), w.table("page")))
        args = (namespace, title.replace(" ", "_"))
        if from_namespace is not None:
            q += " AND pl.pl_from_namespace = %s"
            args += (from_namespace,)
        rows = self.sql(q + " ORDER BY 1", args, server=w.db_server)
        return [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in rows]

    def _has_column(self, w, table, column):
        return bool(self.sql("SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                             "AND table_name = %s AND column_name = %s",
                             (w.dbname, "%s_%s" % (w.prefix, table), column),
                             server=w.db_server))

    def transcluders(self, domain, template):
        """Titles of pages whose templatelinks name Template:<template>."""
        w = self.wiki(domain)
        rows = self.sql("SELECT p.page_title FROM %s tl JOIN %s lt ON lt.lt_id = tl.tl_target_id "
                        "JOIN %s p ON p.page_id = tl.tl_from WHERE lt.lt_namespace = 10 "
                        "AND lt.lt_title = %%s ORDER BY 1"
                        % (w.table("templatelinks"), w.table("linktarget"), w.table("page")),
                        (template.replace(" ", "_"),), server=w.db_server)
        return [r[0].decode() if isinstance(r[0], bytes) else r[0] for r in rows]

    def ready_jobs(self, domain, cmd=None):
        """Rows with job_token = '' (ready), optionally of one job type."""
        w = self.wiki(domain)
        q = "SELECT COUNT(*) FROM %s WHERE job_token = ''" % w.job_table
        if cmd:
            return self.sql(q + " AND job_cmd = %s", (cmd,), server=w.db_server)[0][0]
        return self.sql(q, server=w.db_server)[0][0]

    def total_jobs(self, domain):
        w = self.wiki(domain)
        return self.sql("SELECT COUNT(*) FROM %s" % w.job_table, server=w.db_server)[0][0]

    def job_counts(self, domain):
        """{job_cmd: {'ready': n, 'claimed': n}} for one wiki."""
        out = {}
        w = self.wiki(domain)
        rows = self.sql("SELECT job_cmd, job_token = '', COUNT(*) FROM %s GROUP BY 1, 2"
                        % w.job_table, server=w.db_server)
        for cmd, ready, n in rows:
            cmd = cmd.decode() if isinstance(cmd, bytes) else cmd
            out.setdefault(cmd, {"ready": 0, "claimed": 0})["ready" if ready else "claimed"] = n
        return out

    def run_jobs_php(self, domain, maxjobs=None, maxtime=None, type=None):
        """maintenance/runJobs.php for one wiki; returns the CompletedProcess."""
        args = []
        if maxjobs is not None:
            args += ["--maxjobs", maxjobs]
        if maxtime is not None:
            args += ["--maxtime", maxtime]
        if type is not None:
            args += ["--type", type]
        return self.maintenance(domain, "runJobs.php", *args)

    def access_log_entries(self):
        """DIR/logs/access.log parsed: dicts with start (unix time, float), host, request,
        status, duration_us, bytes, pid, user_agent."""
        out = []
        try:
            f = open(self.access_log)
        except FileNotFoundError:
            return out
        with f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) < 8:
                    continue
                out.append({"start": float(p[0]), "host": p[1], "request": p[2],
                            "status": int(p[3]), "duration_us": int(p[4]),
                            "bytes": 0 if p[5] == "-" else int(p[5]), "pid": int(p[6]),
                            "user_agent": p[7]})
        return out


@contextlib.contextmanager
def temporary_farm(prefix, wikis=0, **farm_args):
    """A started farm in a new directory under /tmp (not pytest's tmp_path: Apache's
    workers, www-data, must traverse the farm's parents); stopped and removed after.
    farm_args go to Farm() (binlog_format)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    f = Farm(os.path.join(d, "farm"), **farm_args)
    try:
        f.start(wikis=wikis)
        yield f
    finally:
        f.stop()
        shutil.rmtree(d, ignore_errors=True)


def _php_serialize(value):
    """PHP serialize() for the str/int/float/dict values job params use."""
    if isinstance(value, bool):
        return "b:%d;" % value
    if isinstance(value, int):
        return "i:%d;" % value
    if isinstance(value, float):
        return "d:%r;" % value
    if isinstance(value, str):
        return 's:%d:"%s";' % (len(value.encode()), value)
    if isinstance(value, dict):
        return "a:%d:{%s}" % (len(value), "".join(_php_serialize(k) + _php_serialize(v)
                                                   for k, v in value.items()))
    raise TypeError("cannot serialize %r" % (value,))


def _valid_domain(d):
    return re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", d) \
        is not None and len(d) <= 200


def _www_data_gid():
    try:
        return grp.getgrnam("www-data").gr_gid
    except KeyError:
        return 0


# The platform database, as wbaas's Laravel migrations leave it (wbstack/api
# database/migrations: create_wikis_table, create_wiki_dbs_table, create_wiki_settings_table,
# modify_wiki_settings_value_length, 2026_09_14 update_wikis_primary_key_column_type and
# add_missing_foreign_key_constraints_to_wiki_id_columns).
PLATFORM_SQL = [
    "CREATE DATABASE `%s` DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % PLATFORM_DB,
    "CREATE DATABASE `%s` DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % COORD_DB,
    """CREATE TABLE `%s`.wikis (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        domain VARCHAR(255) NOT NULL,
        sitename VARCHAR(255) NOT NULL,
        deleted_at TIMESTAMP NULL DEFAULT NULL,
        created_at TIMESTAMP NULL DEFAULT NULL,
        updated_at TIMESTAMP NULL DEFAULT NULL,
        UNIQUE KEY wikis_domain_unique (domain)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""" % PLATFORM_DB,
    """CREATE TABLE `%s`.wiki_dbs (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        prefix VARCHAR(100) NOT NULL,
        user VARCHAR(100) NOT NULL,
        password VARCHAR(100) NOT NULL,
        version VARCHAR(20) NOT NULL,
        wiki_id BIGINT UNSIGNED NULL DEFAULT NULL,
        created_at TIMESTAMP NULL DEFAULT NULL,
        updated_at TIMESTAMP NULL DEFAULT NULL,
        UNIQUE KEY wiki_dbs_name_prefix_unique (name, prefix),
        KEY wiki_dbs_version_index (version),
        UNIQUE KEY wiki_dbs_wiki_id_unique (wiki_id),
        CONSTRAINT wiki_dbs_wiki_id_foreign FOREIGN KEY (wiki_id) REFERENCES wikis (id)
            ON DELETE RESTRICT ON UPDATE RESTRICT
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""" % PLATFORM_DB,
    """CREATE TABLE `%s`.wiki_settings (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        value TEXT NOT NULL,
        wiki_id BIGINT UNSIGNED NULL DEFAULT NULL,
        created_at TIMESTAMP NULL DEFAULT NULL,
        updated_at TIMESTAMP NULL DEFAULT NULL,
        KEY wiki_settings_wiki_id_index (wiki_id),
        UNIQUE KEY wiki_settings_wiki_id_name_unique (wiki_id, name),
        CONSTRAINT wiki_settings_wiki_id_foreign FOREIGN KEY (wiki_id) REFERENCES wikis (id)
            ON DELETE RESTRICT ON UPDATE RESTRICT
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""" % PLATFORM_DB,
]

# Private Apache config: nothing from /etc/apache2. Access log fields are tab separated:
# request start (unix seconds.microseconds), Host header, request line, final status,
# time taken (microseconds), response bytes, worker pid, User-Agent.
HTTPD_CONF = """\
# Written by tests/farm/farm.py
ServerRoot "{dir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {dir}/run/httpd.pid
DefaultRuntimeDir {dir}/run
Mutex file:{dir}/run default

LoadModule mpm_prefork_module {mods}/mod_mpm_prefork.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule alias_module {mods}/mod_alias.so
LoadModule dir_module {mods}/mod_dir.so
LoadModule mime_module {mods}/mod_mime.so
LoadModule env_module {mods}/mod_env.so
LoadModule php_module {php}

{user}
StartServers 2
MinSpareServers 1
MaxSpareServers 4
ServerLimit {workers}
MaxRequestWorkers {workers}
MaxConnectionsPerChild 0
Timeout 300
KeepAlive On
KeepAliveTimeout 5

ErrorLog {dir}/logs/apache-error.log
LogLevel warn
LogFormat "%{{begin:sec}}t.%{{begin:usec_frac}}t\\t%{{Host}}i\\t%r\\t%>s\\t%D\\t%B\\t%P\\t%{{User-Agent}}i" farm
CustomLog {dir}/logs/access.log farm

TypesConfig /etc/mime.types
DocumentRoot {dir}/htdocs
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {dir}/htdocs>
    Require all granted
</Directory>

# Debian's /etc/apache2/conf-available/mediawiki.conf, at /w as wbstack serves it.
Alias /w {mw}
<Directory {mw}>
    Options +FollowSymLinks
    AllowOverride None
    Require all granted
    DirectoryIndex index.php
</Directory>
<Directory {mw}/images>
    php_admin_flag engine off
</Directory>
<FilesMatch ".+\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>

# MediaWiki (1.39 and 1.43) reads getenv('MW_CONFIG_FILE'); under mod_php that sees SetEnv.
SetEnv MW_CONFIG_FILE {dir}/LocalSettings.php
"""

LOCAL_SETTINGS = r"""<?php
// Written by tests/farm/farm.py: the settings of every wiki of this test farm.
// The wiki comes from the Host header (web) or WBS_DOMAIN (CLI), as in wbstack; its
// database, prefix, user and $wgSecretKey from FARM_DIR/wikis/<domain>.json.
if ( !defined( 'MEDIAWIKI' ) ) {
	exit;
}
if ( !defined( 'FARM_DIR' ) ) {
	define( 'FARM_DIR', @FARM_DIR@ );
}

if ( PHP_SAPI === 'cli' || PHP_SAPI === 'phpdbg' ) {
	$farmDomain = strtolower( (string)getenv( 'WBS_DOMAIN' ) );
} else {
	$farmDomain = strtolower( preg_replace( '/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? '' ) );
}
$farmWiki = null;
if ( preg_match( '/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/', $farmDomain ) ) {
	$farmFile = FARM_DIR . "/wikis/$farmDomain.json";
	if ( is_file( $farmFile ) ) {
		$farmWiki = json_decode( file_get_contents( $farmFile ), true );
	}
}
if ( !is_array( $farmWiki ) ) {
	if ( PHP_SAPI === 'cli' || PHP_SAPI === 'phpdbg' ) {
		fwrite( STDERR, "farm: no such wiki: '$farmDomain' (set WBS_DOMAIN)\n" );
		exit( 1 );
	}
	http_response_code( 404 );
	header( 'Content-Type: text/plain; charset=utf-8' );
	echo "no such wiki: $farmDomain\n";
	exit;
}
if ( !defined( 'FARM_DOMAIN' ) ) {
	define( 'FARM_DOMAIN', $farmDomain );
}

$wgSitename = $farmWiki['sitename'];
$wgMetaNamespace = 'Project';
$wgServer = "http://$farmDomain";
$wgCanonicalServer = $wgServer;
$wgScriptPath = '/w';
$wgResourceBasePath = $wgScriptPath;

$wgDBtype = 'mysql';
$wgDBserver = $farmWiki['dbserver'] ?? @DB_SERVER@;
$wgDBname = $farmWiki['dbname'];
$wgDBprefix = $farmWiki['prefix'] . '_';
$wgDBuser = $farmWiki['dbuser'];
$wgDBpassword = $farmWiki['dbpassword'];
$wgDBTableOptions = 'ENGINE=InnoDB, DEFAULT CHARSET=binary';

$wgSecretKey = $farmWiki['secret'];
if ( ( $farmWiki['read_only'] ?? '' ) !== '' ) {
	$wgReadOnly = $farmWiki['read_only'];
}

// Jobs run only through Special:RunJobs or runJobs.php (as with the sidecar deployed).
$wgJobRunRate = 0;

// No object cache: job queue sizes and the like are never stale. The parser and message
// caches keep MediaWiki's defaults (the database).
$wgMainCacheType = CACHE_NONE;
$wgCacheDirectory = FARM_DIR . '/cache/uid-' . ( function_exists( 'posix_geteuid' ) ? posix_geteuid() : 'x' );
$wgTmpDirectory = FARM_DIR . '/tmp';

$wgEnableUploads = false;
$wgUseInstantCommons = false;
$wgEnableEmail = false;
$wgEnableUserEmail = false;
$wgPingback = false;
$wgLanguageCode = 'en';
$wgLocaltimezone = 'UTC';
$wgDiff3 = '';
$wgShowExceptionDetails = true;
$wgDebugLogGroups['exception'] = FARM_DIR . '/logs/mw-exception.log';
$wgDebugLogGroups['error'] = FARM_DIR . '/logs/mw-error.log';

wfLoadSkin( 'Vector' );
$wgDefaultSkin = 'vector';

// A probe job: records when it was pushed and when it ran, for latency tests.
if ( !class_exists( 'FarmProbeJob', false ) ) {
	class FarmProbeJob extends Job implements GenericParameterJob {
		public function __construct( array $params ) {
			parent::__construct( 'farmProbe', $params );
			$this->removeDuplicates = false;
		}

		public function run() {
			$usleep = (int)( $this->params['usleep'] ?? 0 );
			if ( $usleep > 0 ) {
				usleep( $usleep );
			}
			// Burn CPU: unlike sleeping, this counts against PHP's max_execution_time.
			$spinUntil = microtime( true ) + ( (int)( $this->params['spin'] ?? 0 ) ) / 1e6;
			while ( microtime( true ) < $spinUntil ) {
			}
			$line = json_encode( [
				'domain' => FARM_DOMAIN,
				'tag' => $this->params['tag'] ?? '',
				'seq' => $this->params['seq'] ?? null,
				'pushed' => $this->params['pushed'] ?? null,
				'ran' => microtime( true ),
				'pid' => getmypid(),
				'sapi' => PHP_SAPI,
			] ) . "\n";
			file_put_contents( FARM_DIR . '/logs/probe.jsonl', $line, FILE_APPEND | LOCK_EX );
			return true;
		}
	}
}
$wgJobClasses['farmProbe'] = FarmProbeJob::class;

// Optional per-run overrides for every wiki (Farm.set_settings_override), e.g. the
// benchmark's $wgJobRunRate baseline. Absent: the settings above apply unchanged.
if ( is_file( FARM_DIR . '/LocalSettings.override.php' ) ) {
	require FARM_DIR . '/LocalSettings.override.php';
}
"""


# ---- CLI ---------------------------------------------------------------------------------------


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="farm.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="start a farm in DIR, print its JSON description, exit")
    p.add_argument("dir")
    p.add_argument("--wikis", type=int, default=3)
    p.add_argument("--mw", choices=sorted(MW_SERIES_DIRS),
                   help="MediaWiki series to serve (default: $FARM_MW or 1.39)")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground; stop the farm on SIGINT/SIGTERM")
    p.add_argument("--binlog-format", choices=("ROW", "MIXED", "STATEMENT"),
                   help="start mariadbd with log_bin and this binlog_format (default: off)")
    p = sub.add_parser("down", help="stop every process of the farm in DIR")
    p.add_argument("dir")
    p = sub.add_parser("describe", help="print DIR/farm.json")
    p.add_argument("dir")
    p = sub.add_parser("add-wiki", help="add one wiki")
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("--deleted", action="store_true")
    p.add_argument("--no-db", action="store_true", help="list it in apidb only")
    p.add_argument("--version", default=DEFAULT_VERSION)
    p.add_argument("--mw-secret", help="give MediaWiki this $wgSecretKey instead")
    p = sub.add_parser("push", help="push COUNT NullJobs (or probe jobs) to DOMAIN")
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("count", type=int)
    p.add_argument("--usleep", type=int, default=0, help="microseconds each job sleeps")
    p.add_argument("--probe", action="store_true", help="push farmProbe jobs instead")
    p = sub.add_parser("edit", help="edit TITLE of DOMAIN with TEXT (or stdin if -)")
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("title")
    p.add_argument("text")
    p = sub.add_parser("link-jobs", help="queue checkable refreshLinks jobs (template edit)")
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("--pages", type=int, default=5)
    p = sub.add_parser("jobs", help="per wiki: ready and total job rows")
    p.add_argument("dir")
    p = sub.add_parser("runjobs", help="run maintenance/runJobs.php for DOMAIN")
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("--maxjobs", type=int)
    p = sub.add_parser("sql", help="run one SQL statement as root")
    p.add_argument("dir")
    p.add_argument("query")
    p.add_argument("--db")
    a = ap.parse_args(argv)

    if a.cmd == "up":
        if a.mw:
            global MW_SERIES, MW_DIR
            MW_SERIES, MW_DIR = a.mw, os.environ.get("FARM_MW_DIR", MW_SERIES_DIRS[a.mw])
        # SIGTERM while starting: start() stops what it started, then we exit.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        farm = Farm(a.dir, binlog_format=a.binlog_format).start(wikis=a.wikis)
        print(json.dumps(farm.describe(), indent=2), flush=True)
        if a.foreground:
            # The servers stay our children, so they are reaped when they exit (a
            # detached farm's processes are reparented to PID 1, which must reap them).
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                signal.pause()
            except (KeyboardInterrupt, SystemExit):
                pass
            finally:
                farm.stop()
        return 0
    if a.cmd == "down":
        farm = Farm.load(a.dir) if os.path.exists(os.path.join(a.dir, "farm.json")) \
            else Farm(a.dir)
        farm.stop()
        return 0
    farm = Farm.load(a.dir)
    if a.cmd == "describe":
        print(json.dumps(farm.describe(), indent=2))
    elif a.cmd == "add-wiki":
        w = farm.add_wiki(a.domain, deleted=a.deleted, create_db=not a.no_db,
                          version=a.version, mw_secret=a.mw_secret)
        print(json.dumps(dataclasses.asdict(w), indent=2))
    elif a.cmd == "push":
        t0 = time.monotonic()
        if a.probe:
            farm.push_probe_jobs(a.domain, a.count, a.usleep)
        else:
            farm.push_null_jobs(a.domain, a.count, a.usleep)
        print("pushed %d jobs to %s in %.2fs" % (a.count, a.domain, time.monotonic() - t0))
    elif a.cmd == "edit":
        farm.edit(a.domain, a.title, sys.stdin.read() if a.text == "-" else a.text)
    elif a.cmd == "link-jobs":
        print(json.dumps(farm.make_link_jobs(a.domain, pages=a.pages), indent=2))
    elif a.cmd == "jobs":
        for w in farm.wikis.values():
            if w.db_exists:
                print("%-30s ready=%-8d total=%d" % (w.domain, farm.ready_jobs(w.domain),
                                                       farm.total_jobs(w.domain)))
            else:
                print("%-30s (no database)" % w.domain)
    elif a.cmd == "runjobs":
        r = farm.run_jobs_php(a.domain, maxjobs=a.maxjobs)
        sys.stdout.write(r.stdout)
    elif a.cmd == "sql":
        for row in farm.sql(a.query, db=a.db):
            print("\t".join("NULL" if v is None else
                            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in row))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_cli())
    except FarmError as e:
        print("farm.py: %s" % e, file=sys.stderr)
        sys.exit(1)
