"""Shared pieces of the benchmark suite (tests/bench/run.py): the sidecar binary and its
INI, measurements taken from the operating system and from MariaDB, and small helpers.

Measurements, and where each comes from:
- process CPU seconds: /proc/PID/stat utime + stime (sidecars, mariadbd, Apache);
- peak RSS: /proc/PID/status VmHWM, split into RssAnon (private heap, stacks) and
  RssFile (mapped executable and shared libraries);
- database load: MariaDB's own counters: SHOW GLOBAL STATUS (Questions, Com_*,
  table cache) and, with `userstat` switched on, INFORMATION_SCHEMA.USER_STATISTICS per
  database user (statements, BUSY_TIME = server time spent on that user's statements,
  CPU_TIME, rows read). The farm gives each party its own user: `jobdrainer` for the
  sidecars, `mwu_*` for each wiki's MediaWiki, `root` for the benchmark itself, so the
  benchmark's own queries are never counted as the fleet's.
- requests to MediaWiki: the farm's Apache access log.
"""

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "farm"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import farm as farm_mod  # noqa: E402
import sidecar as sidecar_mod  # noqa: E402
from farm import Farm, free_port  # noqa: E402,F401

CLK_TCK = os.sysconf("SC_CLK_TCK")
SCAN_USER, SCAN_PASSWORD = "jdscan", "jdscanpass"


def log(msg, *args):
    """Progress on stderr, with a wall-clock stamp."""
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg % args if args else msg))
    sys.stderr.flush()


def new_workdir(prefix="jdbench-"):
    """A directory under /tmp that Apache's www-data can traverse."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def write_report(path, text):
    """Prints a Markdown report and writes it to path (creating its directory)."""
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a list; None when empty. Values may hold
    float('inf') for observations that never completed (censored)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def median(values):
    return statistics.median(values) if values else None


# ---- the binary and its configuration ------------------------------------------------------


class Binary:
    """The jobdrainer executable under test. Knows which INI keys it accepts (the daemon
    rejects unknown keys, and the key set grows between versions), so one benchmark works
    across versions; keys it drops are reported."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self._known = {}
        self.version = subprocess.run([self.path, "--version"], capture_output=True,
                                      text=True, timeout=10).stdout.strip()
        # sidecar.Sidecar starts the module-level BINARY.
        sidecar_mod.BINARY = self.path

    def _check(self, ini_text):
        with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
            f.write(ini_text)
            name = f.name
        try:
            return subprocess.run([self.path, "--check-config", "--config", name],
                                  capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(name)

    def knows(self, section, key):
        if (section, key) not in self._known:
            r = self._check("[%s]\n%s = %s\n" % (section, key, PROBE_VALUES.get(key, "1")))
            self._known[(section, key)] = r.returncode == 0
        return self._known[(section, key)]

    def effective_config(self, ini_text):
        r = self._check(ini_text)
        if r.returncode != 0:
            raise RuntimeError("jobdrainer --check-config refused the INI:\n%s%s\n%s"
                               % (r.stdout, r.stderr, ini_text))
        return r.stdout


# Values that pass validation, for probing whether a key exists.
PROBE_VALUES = {"listen": "127.0.0.1:0", "log_format": "json", "log_level": "info",
                "host": "127.0.0.1", "user": "x", "database": "x", "holder": "x",
                "version": "x", "path": "/w/index.php", "socket": "", "password": "x",
                "query": "SELECT 1", "coord_db": "x", "enabled": "true"}


def sidecar_ini(binary, farm, overrides=None, defaults_only=False):
    """INI text for a sidecar of `farm`: connection settings, JSON logs, and `overrides`
    ({section: {key: value}}); every other key keeps the binary's default (the values
    in conf/jobdrainer.ini). Keys this binary does not know are dropped and returned.
    Returns (text, dropped)."""
    sections = {
        # debug: benchmarks read each batch's line (at info, one line per drain).
        "sidecar": {"log_format": "json", "log_level": "debug"},
        # Several sidecars share this machine: metrics endpoints on free ports.
        "http": {"listen": "127.0.0.1:0"},
        "mediawiki": {"host": "127.0.0.1", "port": farm.http_port},
        "platform_db": {"host": "127.0.0.1", "port": farm.mysql_port,
                        "user": farm_mod.SIDECAR_USER, "password": farm_mod.SIDECAR_PASSWORD,
                        "database": farm_mod.PLATFORM_DB},
    }
    for section, keys in (overrides or {}).items():
        sections.setdefault(section, {}).update(keys)
    lines, dropped = [], []
    for section, keys in sections.items():
        kept = [(k, v) for k, v in keys.items() if v is not None and binary.knows(section, k)]
        dropped += ["[%s] %s" % (section, k) for k, v in keys.items()
                    if v is not None and not binary.knows(section, k)]
        if not kept:
            continue
        lines.append("[%s]" % section)
        for k, v in kept:
            lines.append("%s = %s" % (k, str(v).replace("\n", "\n    ")))
        lines.append("")
    return "\n".join(lines), dropped


class Pod:
    """One sidecar process (tests/integration/sidecar.py's Sidecar) plus what the
    benchmark reads from /proc about it."""

    def __init__(self, workdir, name, ini_text):
        self.sc = sidecar_mod.Sidecar(workdir, name, ini_text)
        self.name = name
        self.final = None

    def start(self):
        self.sc.start()
        return self

    @property
    def pid(self):
        return self.sc.pid

    def alive(self):
        return self.sc.proc is not None and self.sc.proc.poll() is None

    def proc_stats(self):
        return proc_stats(self.pid) if self.alive() else self.final

    def stop(self):
        """SIGTERM; keeps the last /proc figures (CPU, peak RSS) taken just before."""
        if self.sc.proc is None:
            return
        if self.alive():
            self.final = proc_stats(self.pid)
        try:
            self.sc.stop(timeout=60)
        except AssertionError as e:
            log("pod %s: %s", self.name, str(e).splitlines()[0])

    def kill(self):
        self.sc.kill()

    def lines(self):
        return self.sc.lines()

    def batches(self):
        return self.sc.batches()

    def errors(self):
        return [l for l in self.lines()
                if str(l.get("severity", l.get("level", ""))).lower() in ("error", "warn",
                                                                            "warning")]


class Pods:
    """A group of sidecars, always stopped (context manager)."""

    def __init__(self):
        self.pods = []

    def add(self, pod):
        self.pods.append(pod)
        return pod

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for p in self.pods:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                log("stopping %s: %s", p.name, e)
                p.kill()


# ---- /proc -------------------------------------------------------------------------------


def proc_stats(pid):
    """CPU seconds (user+system, the process itself), peak and current RSS (KiB) and the
    RSS split (anonymous vs file-backed) of a live process. cpu_s has clock-tick (10 ms)
    resolution; cpu_ns sums the scheduler's nanosecond run time of the live threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    out = {"cpu_s": (utime + stime) / CLK_TCK, "children_cpu_s": (cutime + cstime) / CLK_TCK}
    ns = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns += int(f.read().split()[0])
        out["cpu_ns"] = ns
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def rss_by_mapping(pid, top=10):
    """Resident KiB per mapped file (and [heap], [stack], anonymous) from /proc/PID/smaps,
    largest first: what a process's RSS is made of."""
    sizes, cur = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if not parts[0].endswith(":") and "-" in parts[0]:
                cur = parts[5] if len(parts) > 5 else "[anonymous]"
                cur = os.path.basename(cur) if cur.startswith("/") else cur
            elif parts[0] == "Rss:" and cur is not None:
                sizes[cur] = sizes.get(cur, 0) + int(parts[1])
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:top]


def proc_tree_cpu(match):
    """CPU seconds of every live process whose command line contains `match`, plus what
    they reaped from exited children (prefork Apache replaces workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            if match not in cmd:
                continue
            st = proc_stats(int(entry))
        except (OSError, IndexError, ValueError):
            continue
        total += st["cpu_s"] + st["children_cpu_s"]
    return total


def children_cpu():
    """CPU seconds of this benchmark's reaped child processes (PHP CLI runs, pods)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- MariaDB -----------------------------------------------------------------------------

GLOBAL_STATUS = ("Questions", "Queries", "Com_select", "Com_update", "Com_insert", "Com_delete",
                 "Opened_tables", "Opened_table_definitions", "Table_open_cache_misses",
                 "Table_open_cache_hits", "Innodb_rows_read", "Handler_read_key",
                 "Handler_read_next", "Handler_read_first", "Innodb_buffer_pool_reads",
                 "Innodb_buffer_pool_read_requests")
USER_COLS = ("BUSY_TIME", "CPU_TIME", "SELECT_COMMANDS", "UPDATE_COMMANDS", "OTHER_COMMANDS",
             "ROWS_READ", "ROWS_SENT", "ROWS_UPDATED", "ROWS_INSERTED", "TOTAL_CONNECTIONS")


class BenchFarm(Farm):
    """The test farm, plus a MariaDB restart with extra server options (for settings that
    are not dynamic, such as innodb_open_files)."""

    extra_mysqld_args = ()

    def _mysqld_args(self):
        return super()._mysqld_args() + list(self.extra_mysqld_args)

    def restart_mysqld(self, extra_args):
        """Clean shutdown (SIGTERM), then the same data directory and port with
        extra_args added."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
        self.extra_mysqld_args = tuple(extra_args)
        for a in extra_args:
            if a.startswith("--open-files-limit="):
                # mariadbd inherits the file limit; root may raise the hard one.
                want = int(a.split("=", 1)[1])
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
                except (ValueError, OSError):
                    pass
        self._stop_service("mariadbd")
        self.restart_mysql()


class DbStats:
    """Snapshots of MariaDB's counters on a connection of its own (root, via the socket)."""

    def __init__(self, farm, server=None):
        """server: a Farm.add_db_server server's name (None: the main one)."""
        self.farm = farm
        self.conn = farm._root_conn(socket=farm.db_server(server).socket if server else None)
        self.sql("SET GLOBAL userstat = 1")
        self.mysqld_pid = farm._read_pid("mariadbd-" + server if server else "mariadbd")

    def reattach(self):
        """After a MariaDB restart: a new connection, userstat on again, the new pid."""
        self.close()
        self.conn = self.farm._root_conn()
        self.sql("SET GLOBAL userstat = 1")
        self.mysqld_pid = self.farm._read_pid("mariadbd")

    def sql(self, q, args=None):
        self.conn.ping(reconnect=True)
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall()

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    def snapshot(self):
        g = {k: int(v) for k, v in self.sql(
            "SHOW GLOBAL STATUS WHERE Variable_name IN (%s)"
            % ",".join("'%s'" % k for k in GLOBAL_STATUS))}
        users = {}
        for row in self.sql("SELECT USER, %s FROM information_schema.USER_STATISTICS"
                            % ", ".join(USER_COLS)):
            users[row[0]] = dict(zip(USER_COLS, (float(x) for x in row[1:])))
        try:
            cpu = proc_stats(self.mysqld_pid)["cpu_s"]
        except (OSError, TypeError):
            cpu = None
        return {"t": time.monotonic(), "global": g, "users": users, "mysqld_cpu_s": cpu}

    @staticmethod
    def delta(a, b):
        """b - a: global counters, per-user counters, mariadbd CPU, seconds elapsed."""
        users = {}
        for u, vals in b["users"].items():
            base = a["users"].get(u, {})
            users[u] = {k: v - base.get(k, 0.0) for k, v in vals.items()}
        return {
            "seconds": b["t"] - a["t"],
            "global": {k: b["global"][k] - a["global"].get(k, 0) for k in b["global"]},
            "users": users,
            "mysqld_cpu_s": (b["mysqld_cpu_s"] - a["mysqld_cpu_s"]
                             if a["mysqld_cpu_s"] is not None and b["mysqld_cpu_s"] is not None
                             else None),
        }


def user_statements(delta_users, pred):
    """Statements and server time of the users `pred` selects, from a DbStats delta."""
    out = {"statements": 0.0, "busy_s": 0.0, "cpu_s": 0.0, "rows_read": 0.0}
    for u, d in delta_users.items():
        if not pred(u):
            continue
        out["statements"] += d["SELECT_COMMANDS"] + d["UPDATE_COMMANDS"] + d["OTHER_COMMANDS"]
        out["busy_s"] += d["BUSY_TIME"]
        out["cpu_s"] += d["CPU_TIME"]
        out["rows_read"] += d["ROWS_READ"]
    return out


def is_mediawiki_user(u):
    return u.startswith("mwu_") or u == farm_mod.MW_USER


def create_scan_user(farm, server=None):
    """A database user for the sidecars' [scan_db] connection: SELECT on the wikis' job
    tables only, so USER_STATISTICS shows the backlog scan apart from everything else.
    server: a Farm.add_db_server server's name (None: the main one)."""
    for host in ("127.0.0.1", "localhost"):
        farm.sql("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'"
                 % (SCAN_USER, host, SCAN_PASSWORD), server=server)
        farm.sql("GRANT SELECT ON `mwdb\\_%%`.* TO '%s'@'%s'" % (SCAN_USER, host),
                 server=server)


class GeneralLog:
    """MariaDB's general query log for a short window, read back as statements."""

    def __init__(self, db, path):
        self.db, self.path = db, path

    def __enter__(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.db.sql("SET GLOBAL general_log_file = %s", (self.path,))
        self.db.sql("SET GLOBAL log_output = 'FILE'")
        self.db.sql("SET GLOBAL general_log = 1")
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.db.sql("SET GLOBAL general_log = 0")
        self.seconds = time.monotonic() - self.t0

    def statements(self):
        """(thread id, command, text) of every logged Query."""
        out, cur = [], None
        head = re.compile(r"^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2}\s+|\t\t)\s*(\d+)\s+(\w+)\t?(.*)$")
        try:
            f = open(self.path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        with f:
            for line in f:
                m = head.match(line.rstrip("\n"))
                if m:
                    cur = [int(m.group(1)), m.group(2), m.group(3)]
                    out.append(cur)
                elif cur is not None:
                    cur[2] += "\n" + line.rstrip("\n")
        return [tuple(x) for x in out if x[1] in ("Query", "Execute")]


# The sidecar's coordination statements, by kind (sidecar/coord.c, sidecar/scan.c).
SIDECAR_STATEMENT_KINDS = [
    ("lease acquire", re.compile(r"^UPDATE `[^`]+`\.jd_lease SET holder = .*LAST_INSERT_ID", re.S)),
    ("lease renew", re.compile(r"^UPDATE `[^`]+`\.jd_lease SET expires_at", re.S)),
    ("lease release + wiki state", re.compile(r"^UPDATE `[^`]+`\.jd_lease l JOIN", re.S)),
    ("lease release", re.compile(r"^UPDATE `[^`]+`\.jd_lease SET holder = NULL", re.S)),
    ("busy wikis (spare workers)", re.compile(r"^SELECT w\.domain FROM `[^`]+`\.jd_wiki.*"
                                              r"l\.expires_at >= NOW", re.S)),
    ("candidates", re.compile(r"^SELECT w\.domain FROM `[^`]+`\.jd_wiki", re.S)),
    ("backlog summary (metrics)", re.compile(r"^SELECT COUNT\(\*\), SUM\(oldest_ready_at", re.S)),
    ("wiki failures", re.compile(r"^SELECT failures FROM", re.S)),
    ("lease rows", re.compile(r"^INSERT IGNORE INTO `[^`]+`\.jd_lease", re.S)),
    ("backlog write", re.compile(r"^INSERT INTO `[^`]+`\.jd_wiki", re.S)),
    ("forget unseen", re.compile(r"^DELETE w FROM", re.S)),
    ("scan (job tables)", re.compile(r"^\(SELECT \d+, 'r'", re.S)),
    ("discovery", re.compile(r"wiki_dbs", re.S)),
    ("clock", re.compile(r"^SELECT NOW\(6\)", re.S)),
]


_COORD_TABLE = re.compile(r"\bjd_(lease|wiki|schema)\b")


def classify_sidecar_statement(text):
    for kind, rx in SIDECAR_STATEMENT_KINDS:
        if rx.search(text):
            return kind
    if _COORD_TABLE.search(text):
        return "other coordination"
    return None


# ---- the farm ----------------------------------------------------------------------------


def clear_jobs(farm, domains):
    for d in domains:
        farm.sql("TRUNCATE TABLE %s" % farm.wiki(d).job_table)


def reset_coordination(farm):
    """Drops jobdrainer's tables: every run starts with a fresh coordination database."""
    for t in ("jd_lease", "jd_wiki", "jd_schema", "jd_pause", "jd_scan"):
        farm.sql("DROP TABLE IF EXISTS `%s`.`%s`" % (farm_mod.COORD_DB, t))


def access_entries_since(farm, t0):
    return [e for e in farm.access_log_entries() if e["start"] >= t0]


def is_runjobs(entry):
    return entry["request"].startswith("POST /w/index.php")


class Sampler(threading.Thread):
    """Samples (wall time, COUNT(*), MAX(job_id)) of one job table every `interval`
    seconds on a connection of its own, until stopped."""

    def __init__(self, farm, domain, interval=1.0):
        super().__init__(daemon=True)
        self.farm, self.table, self.interval = farm, farm.wiki(domain).job_table, interval
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        conn = self.farm._root_conn()
        try:
            while not self._halt.is_set():
                t = time.time()
                with conn.cursor() as cur:
                    cur.execute("SELECT COUNT(*), COALESCE(MAX(job_id), 0) FROM %s" % self.table)
                    n, mx = cur.fetchone()
                self.samples.append((t, int(n), int(mx)))
                self._halt.wait(self.interval)
        finally:
            conn.close()

    def stop(self):
        self._halt.set()
        self.join(timeout=30)


def _rounded(v):
    """Floats to 4 decimals (0.1 ms for seconds, 0.1 s for unix times), recursively."""
    if isinstance(v, float):
        return v if v != v or v in (float("inf"), float("-inf")) else round(v, 4)
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def save_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_rounded(data), f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)
