#!/usr/bin/python3
"""Detection at farm scale over two database servers, with faults (issue 21, "Measure and
report"): cold-wiki wait and database share per server for one binary (a label), written
as JSON, and a markdown report that puts two labels (before, after) side by side.

Two MariaDB servers on loopback at MariaDB's default settings (the farm's: table caches
and buffer pool as shipped), both with log_bin (ROW). N wikis on each (workloads.ScanWikis:
a job table and platform rows each, every 10th wiki with 20 ready jobs, never drained:
MediaWiki is a closed port, only detection is measured); discovery's fifth column names
the second server for its half, and [scan] allowed_servers lists it. The wikis are made
once and every scenario runs a fresh sidecar on them, with fresh coordination tables:

  a  no feed, no fault
  b  feeds on ([binlog] enabled = true), no fault
  c  no feed; one cold wiki's job table on the first server under LOCK TABLES ... WRITE,
     taken by the benchmark when the window opens and held until the scenario ends
  d  no feed; the second server hung: discovery names, for its half, a fake server that
     accepts the login and then never answers (its wikis are lost for the window); only
     the first server's wikis are probed
  e  feeds on; a writer inserting 200 jobs a second spread over 20 wikis of the first
     server (as root: not counted as detection) from the window's start to its end

Each scenario waits for every healthy server's first complete sweep (the sidecar's
"scan" log line; at most --warmup-max seconds), then opens a window of --window seconds:
probe jobs are INSERTed at random times in its first 80% on random cold wikis of the
healthy servers (none is probed twice), and jd_wiki is polled every 100 ms until each
shows ready jobs; a probe not seen --grace seconds after the window closed counts as
never seen (inf). Measured over the window, per server: the BUSY_TIME of the scan user,
the feed user and the sidecar's coordination user in INFORMATION_SCHEMA.USER_STATISTICS
(detection's share = scan + feed, wakes included: a wake's rescan is a scan statement),
mariadbd's CPU; the scanner lease's (holder, token) polled every second; the "scan" log
lines' sweep periods per server and the pod's jobdrainer_scan*/jobdrainer_binlog* gauges;
which users hold a binary log dump connection on each server.

    nice -n 19 /usr/bin/python3 tests/bench/bench_detection.py --binary build/jobdrainer \\
        --label after --before-json tests/bench/results/detection_before.json
        [--wikis 10000] [--window 120] [--probes 100] [--scenarios a,b,c,d,e]
        [--set 'SECTION.KEY=VALUE' ...] [--commit REV]
    /usr/bin/python3 tests/bench/bench_detection.py --report-only \\
        --before-json ..._before.json --after-json ..._after.json

writes tests/bench/results/detection_<label>.json and tests/bench/results/detection.md
(this label beside --before-json's). --set adds an INI setting to every scenario;
"{db2}" in a section name stands for the second server's host:port, e.g.
--set 'server {db2}.tls=off'.
"""

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_common  # noqa: E402
from bench_common import (SCAN_PASSWORD, SCAN_USER, BenchFarm, Binary, DbStats, Pod,  # noqa: E402
                          Pods, create_scan_user, farm_mod, free_port, log, new_workdir,
                          percentile, reset_coordination, save_json, sidecar_ini,
                          user_statements, write_report)
from bench_db_servers import QUERY as DB_SERVERS_QUERY  # noqa: E402
from bench_scan_budget import (FEED_PASSWORD, FEED_USER, PROBE_CMD, create_feed_user,  # noqa: E402
                               detected, fmt, push_probe)
from test_server_trust import HostileServer, Listener, greeting, packet  # noqa: E402
from workloads import SCAN_VERSION, ScanWikis  # noqa: E402

SCENARIOS = {
    "a": "no feed, no fault",
    "b": "feeds on, no fault",
    "c": "no feed, one job table locked (first server)",
    "d": "no feed, second server hung",
    "e": "feeds on, 200 job inserts/s on the first server",
}
FEED_SCENARIOS = ("b", "e")
LABELS = ("ka", "kb")  # the wikis of the first and of the second server (ka00000.scan.test)
# bench_db_servers' discovery, its fifth column (the server) an SQL expression of our own:
# fs.server, or in d the second server's address replaced by the hung fake's.
QUERY = DB_SERVERS_QUERY.replace("s.value, fs.server\n", "s.value, %s\n", 1)
assert QUERY != DB_SERVERS_QUERY
WRITER_RATE, WRITER_WIKIS = 200, 20
SERVERS = ("main", "db2")
# How a report names the servers.
SERVER_NAMES = {"main": "first server", "db2": "second server"}


class LoginThenHang(Listener):
    """A MariaDB server that completes the handshake for any user and password and then
    never answers a statement: a server stopped mid-way behind a live TCP stack. The
    greeting and packets are test_server_trust's fake server's."""

    def __init__(self):
        self.held = []
        super().__init__()

    def handle(self, conn, n):
        try:
            conn.sendall(greeting(b"mysql_native_password"))
            HostileServer._read_packet(conn)
            # OK: no rows, no insert id, SERVER_STATUS_AUTOCOMMIT, no warnings.
            conn.sendall(packet(2, b"\x00\x00\x00\x02\x00\x00\x00"))
        except OSError:
            conn.close()
            return
        self.held.append(conn)  # whatever comes next is read by nobody

    def close(self):
        super().close()
        for conn in self.held:
            conn.close()


class Writer(threading.Thread):
    """Inserts `rate` ready jobs a second, round robin over `tables`, on a root connection
    of its own (root is not counted as detection), until stopped."""

    def __init__(self, farm, tables, rate):
        super().__init__(daemon=True)
        self.farm, self.tables, self.rate = farm, tables, rate
        self.inserted = 0
        self.seconds = 0.0
        self._halt = threading.Event()

    def run(self):
        conn = self.farm._root_conn()
        t0 = time.monotonic()
        try:
            with conn.cursor() as cur:
                while not self._halt.is_set():
                    db, pre = self.tables[self.inserted % len(self.tables)]
                    cur.execute(
                        "INSERT INTO `%s`.`%s_job` (job_cmd, job_namespace, job_title, "
                        "job_timestamp, job_params, job_random, job_sha1) VALUES ('jdBenchWrite', "
                        "0, 'W', DATE_FORMAT(UTC_TIMESTAMP(), '%%Y%%m%%d%%H%%i%%s'), 'a:0:{}', "
                        "1, '')" % (db, pre))
                    self.inserted += 1
                    # Paced against the start, so a slow moment is caught up.
                    ahead = t0 + self.inserted / float(self.rate) - time.monotonic()
                    if ahead > 0:
                        self._halt.wait(ahead)
        finally:
            self.seconds = time.monotonic() - t0
            conn.close()

    def stop(self):
        self._halt.set()
        self.join(timeout=30)


class Locker:
    """LOCK TABLES ... WRITE on one job table, held on a root connection until release()."""

    def __init__(self, farm, table):
        self.conn = farm._root_conn()
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLES %s WRITE" % table)

    def release(self):
        with self.conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        self.conn.close()


def scanner_lease(farm):
    rows = farm.sql("SELECT holder, token FROM `%s`.jd_lease WHERE name = '*scanner*' AND "
                    "holder IS NOT NULL" % farm_mod.COORD_DB)
    return (rows[0][0], int(rows[0][1])) if rows else None


def dump_users(db):
    """Users with a binary log dump connection (a feed) on a DbStats' server."""
    return sorted({r[0] for r in db.sql("SELECT USER FROM information_schema.PROCESSLIST "
                                        "WHERE COMMAND LIKE 'Binlog Dump%%'")})


def with_server_section(binary, text, address, keys):
    """text plus `[server ADDRESS]` with keys, if the binary accepts that section (the
    named servers' credentials of issue 21); else text as it is. Returns (text,
    accepted, the binary's refusal)."""
    if not keys:
        return text, None, None
    more = text + "\n[server %s]\n%s\n" % (address, "\n".join(
        "%s = %s" % kv for kv in keys.items()))
    r = binary._check(more)
    if r.returncode == 0:
        return more, True, None
    binary.effective_config(text)  # raises if the INI is wrong without the section too
    return text, False, (r.stdout + r.stderr).strip()[-400:]


def server_of(line, addresses):
    """Which of SERVERS a "scan" log line is about (the main server's line may name no
    server)."""
    s = line.get("server")
    for name, addr in addresses.items():
        if s == addr:
            return name
    return "main" if s is None else s


class Bench:
    def __init__(self, args, binary):
        self.args, self.binary = args, binary
        self.workdir = new_workdir("jddetect-")
        self.farm = BenchFarm(os.path.join(self.workdir, "farm"), binlog_format="ROW")
        self.extra = {}
        for item in args.set:
            key, eq, value = item.partition("=")
            section, dot, name = key.rpartition(".")
            if not eq or not dot or not section or not name:
                raise SystemExit("--set %r: SECTION.KEY=VALUE" % item)
            self.extra.setdefault(section, {})[name] = value

    def start(self):
        farm = self.farm
        farm.start()
        farm.add_db_server("db2")
        for server in (None, "db2"):
            create_scan_user(farm, server=server)
            create_feed_user(farm, server=server)
        self.stats = {"main": DbStats(farm), "db2": DbStats(farm, server="db2")}
        self.addresses = {"main": "127.0.0.1:%d" % farm.mysql_port,
                          "db2": farm.db_server("db2").address}
        self.sets = {"main": ScanWikis(farm, label=LABELS[0]),
                     "db2": ScanWikis(farm, server="db2", label=LABELS[1])}
        t = time.monotonic()
        # One thread a server: each set has connections of its own.
        threads = [threading.Thread(target=sw.grow, args=(self.args.wikis,))
                   for sw in self.sets.values()]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        made = sum(len(sw.tables) for sw in self.sets.values())
        if made != 2 * self.args.wikis:
            raise RuntimeError("made %d wikis of %d" % (made, 2 * self.args.wikis))
        self.create_s = time.monotonic() - t
        log("%d wikis on each server created in %.0fs", self.args.wikis, self.create_s)

    def stop(self):
        for sw in getattr(self, "sets", {}).values():
            sw.close()
        for s in getattr(self, "stats", {}).values():
            s.close()
        try:
            self.farm.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def server_variables(self):
        return {name: dict(s.sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'table_open_cache', "
            "'table_definition_cache', 'innodb_buffer_pool_size', 'log_bin', "
            "'binlog_format', 'max_statement_time', 'lock_wait_timeout')"))
            for name, s in self.stats.items()}

    def ini(self, scenario, hung_address):
        feed = scenario in FEED_SCENARIOS
        second = hung_address or self.addresses["db2"]
        server_expr = ("REPLACE(fs.server, '%s', '%s')" % (self.addresses["db2"], hung_address)
                       if hung_address else "fs.server")
        overrides = {
            "sidecar": {"workers": 1, "log_level": "debug"},
            # No MediaWiki behind these wikis: a closed port; detection is measured.
            "mediawiki": {"port": free_port()},
            "discovery": {"version": SCAN_VERSION, "interval": 3600,
                          "query": QUERY % ((server_expr,) + LABELS)},
            "scan_db": {"user": SCAN_USER, "password": SCAN_PASSWORD, "database": ""},
            "scan": {"allowed_servers": second},
            "binlog": ({"enabled": "true", "user": FEED_USER, "password": FEED_PASSWORD}
                       if feed else {"enabled": "false"}),
        }
        server_keys = {"user": SCAN_USER, "password": SCAN_PASSWORD}
        for section, keys in self.extra.items():
            if section == "server {db2}":
                server_keys.update(keys)
            else:
                overrides.setdefault(section, {}).update(keys)
        text, dropped = sidecar_ini(self.binary, self.farm, overrides)
        text, accepted, refusal = with_server_section(self.binary, text, second, server_keys)
        return text, {"dropped_keys": dropped, "server_section_accepted": accepted,
                      "server_section_refusal": refusal}

    def cold(self, server, exclude):
        sw = self.sets[server]
        return [(server, i) for i in range(len(sw.tables))
                if i % 10 != 1 and (server, i) not in exclude]

    def table(self, server, i):
        db, pre = self.sets[server].tables[i]
        return "`%s`.`%s_job`" % (db, pre)

    def run(self, scenario, seed):
        args, farm = self.args, self.farm
        rng = random.Random(seed)
        reset_coordination(farm)
        hung = LoginThenHang() if scenario == "d" else None
        healthy = ["main"] if hung else list(SERVERS)
        # The wikis the faults and the writer use are never probed.
        reserved = set()
        locked = writer_wikis = None
        if scenario == "c":
            locked = rng.choice(self.cold("main", reserved))
            reserved.add(locked)
        if scenario == "e":
            writer_wikis = rng.sample(self.cold("main", reserved), WRITER_WIKIS)
            reserved.update(writer_wikis)
        cold = [w for s in healthy for w in self.cold(s, reserved)]
        probes = rng.sample(cold, min(args.probes, len(cold)))
        offsets = sorted(rng.uniform(0, args.window * 0.8) for _ in probes)
        text, ini_notes = self.ini(scenario, "127.0.0.1:%d" % hung.port if hung else None)
        bench_common.sidecar_mod.BINARY = self.binary.path
        pod_dir = os.path.join(self.workdir, "pods")
        os.makedirs(pod_dir, exist_ok=True)
        out = {"scenario": scenario, "title": SCENARIOS[scenario],
               "loadavg_start": open("/proc/loadavg").read().split()[:3],
               "healthy_servers": healthy, "ini": text, **ini_notes}
        pushed, seen, where = {}, {}, {}
        locker = writer = None
        try:
            with Pods() as pods:
                pod = pods.add(Pod(pod_dir, "detect-%s-%d" % (scenario, int(time.time())),
                                   text)).start()
                out["warmup_s"], out["warmup_complete"] = self.warm_up(pod, healthy)
                if locked:
                    locker = Locker(farm, self.table(*locked))
                if writer_wikis:
                    writer = Writer(farm, [self.sets[s].tables[i] for s, i in writer_wikis],
                                    WRITER_RATE)
                    writer.start()
                db0 = {name: s.snapshot() for name, s in self.stats.items()}
                lines0 = len(pod.lines())
                t0 = time.monotonic()
                pending = list(zip(offsets, probes))
                db1 = metrics = None
                leases, last_lease_poll, feeds = [], 0.0, {}
                while True:
                    now = time.monotonic() - t0
                    if now >= args.window and db1 is None:
                        db1 = {name: s.snapshot() for name, s in self.stats.items()}
                        metrics = self.gauges(pod)
                        if writer:
                            writer.stop()
                    if now >= args.window and (len(seen) == len(pushed) or
                                               now >= args.window + args.grace):
                        break
                    while pending and pending[0][0] <= now:
                        _, (server, i) = pending.pop(0)
                        dom = self.sets[server].domain(i)
                        where[dom] = server
                        pushed[dom] = push_probe(farm, self.table(server, i),
                                                 server=None if server == "main" else server)
                    if now - last_lease_poll >= 1.0:
                        last_lease_poll = now
                        lease = scanner_lease(farm)
                        if lease and (not leases or leases[-1][1:] != list(lease)):
                            leases.append([round(now, 1)] + list(lease))
                        if now >= args.window / 2 and not feeds:
                            feeds = {n: dump_users(s) for n, s in self.stats.items()}
                    for dom in detected(farm, [d for d in pushed if d not in seen]):
                        seen[dom] = time.time() - pushed[dom]
                    time.sleep(0.1)
                lines = pod.lines()[lines0:]
                pod.stop()
        finally:
            if writer:
                writer.stop()
            if locker:
                locker.release()
            if hung:
                hung.close()
        out.update(self.figures(db0, db1, healthy))
        out["gauges"] = metrics
        out["feeds"] = feeds
        out["scanner_lease"] = leases
        out["lease_lost_lines"] = sum(1 for l in lines if l.get("msg") == "scanner lease lost")
        out["sweeps_ms"] = {}
        for l in lines:
            if l.get("msg") == "scan" and "ms" in l:
                out["sweeps_ms"].setdefault(server_of(l, self.addresses), []).append(int(l["ms"]))
        out["warnings"] = {}
        for l in lines:
            if str(l.get("severity", l.get("level", ""))).lower() in ("warn", "warning",
                                                                      "error"):
                out["warnings"][l.get("msg")] = out["warnings"].get(l.get("msg"), 0) + 1
        if writer:
            out["writer_inserts_per_s"] = writer.inserted / writer.seconds
        if locked:
            out["locked_wiki"] = self.sets[locked[0]].domain(locked[1])
        waits = {s: [] for s in healthy}
        for dom in pushed:
            waits[where[dom]].append(seen.get(dom, float("inf")))
        out["waits_s"] = {s: sorted(v) for s, v in waits.items()}
        out["probes"], out["seen"] = len(pushed), len(seen)
        self.clean(probes, writer_wikis)
        return out

    def warm_up(self, pod, healthy):
        """Until every healthy server logged a complete sweep, at most --warmup-max s.
        Returns (seconds, complete)."""
        t = time.monotonic()
        while True:
            if not pod.alive():
                raise RuntimeError("%s exited:\n%s" % (pod.name, pod.sc.raw()[-3000:]))
            done = {server_of(l, self.addresses) for l in pod.lines() if l.get("msg") == "scan"}
            if all(s in done for s in healthy):
                return time.monotonic() - t, True
            if time.monotonic() - t > self.args.warmup_max:
                log("warm-up: no complete sweep of %s after %ds; measuring anyway",
                    [s for s in healthy if s not in done], self.args.warmup_max)
                return time.monotonic() - t, False
            time.sleep(0.2)

    @staticmethod
    def gauges(pod):
        try:
            m = pod.sc.metrics()
        except Exception as e:  # noqa: BLE001 - a hung pod's endpoint is a finding too
            return {"error": str(e)}
        return {k: v for k, v in m.items()
                if k.startswith(("jobdrainer_scan", "jobdrainer_binlog", "jobdrainer_detect",
                                 "jobdrainer_wikis"))}

    def figures(self, db0, db1, healthy):
        per = {}
        for name in SERVERS:
            d = DbStats.delta(db0[name], db1[name])
            minutes = d["seconds"] / 60.0

            def busy(user, dd=d):
                return user_statements(dd["users"], lambda u: u == user)

            scan, feed = busy(SCAN_USER), busy(FEED_USER)
            coord = busy(farm_mod.SIDECAR_USER)
            per[name] = {
                "window_s": d["seconds"], "healthy": name in healthy,
                "scan_busy_s": scan["busy_s"], "feed_busy_s": feed["busy_s"],
                "coord_busy_s": coord["busy_s"],
                "scan_statements_per_min": scan["statements"] / minutes,
                # Detection's share of one core: scan (wakes' rescans included) + feed.
                "detection_share": (scan["busy_s"] + feed["busy_s"]) / d["seconds"],
                "coord_share": coord["busy_s"] / d["seconds"],
                "mysqld_cpu_share": (d["mysqld_cpu_s"] / d["seconds"]
                                     if d["mysqld_cpu_s"] is not None else None),
            }
        return {"per_server": per}

    def clean(self, probes, writer_wikis):
        """Removes what the scenario inserted (probes, the writer's rows)."""
        for server, i in list(probes) + list(writer_wikis or []):
            self.farm.sql("DELETE FROM %s WHERE job_cmd IN (%%s, 'jdBenchWrite')"
                          % self.table(server, i), (PROBE_CMD,),
                          server=None if server == "main" else server)


def binary_commit(path, given):
    """The commit a binary was built from: --commit, else a COMMIT file beside it, else
    the git checkout it lies in (with "+dirty" when its sources differ)."""
    if given:
        return given
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), "COMMIT")
    if os.path.exists(beside):
        return open(beside).read().strip()
    d = os.path.dirname(os.path.abspath(path))
    try:
        rev = subprocess.run(["git", "-C", d, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", d, "status", "--porcelain", "--", "../sidecar"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, OSError):
        return "unknown"


# ---- the report ------------------------------------------------------------------------------


def wait_stats(waits):
    """p50, p99, max (nearest rank; inf: never seen) of the waits of every healthy server."""
    allw = sorted(w for v in waits.values() for w in v)
    return {"p50": percentile(allw, 50), "p99": percentile(allw, 99),
            "max": allw[-1] if allw else None, "n": len(allw),
            "unseen": sum(1 for w in allw if w == float("inf"))}


def fs(v, digits=2):
    if v is None:
        return "-"
    return "never" if v == float("inf") else fmt(v, digits)


def ratio(a, b):
    if a is None or b is None or b == 0 or float("inf") in (a, b):
        return "-"
    return fmt(a / b, 2)


def share_cell(run, name):
    p = run["per_server"][name]
    if not p["healthy"]:
        return "hung"
    return "%s%%" % fmt(100 * p["detection_share"], 2)


def sweep_cell(run, name):
    """Complete sweeps logged in the window and grace: how many, median and longest."""
    v = sorted(run["sweeps_ms"].get(name, []))
    if not v:
        return "none"
    return "%d: %s, %s" % (len(v), fmt(percentile(v, 50) / 1000.0, 1), fmt(v[-1] / 1000.0, 1))


def lease_cell(run):
    tokens = run["scanner_lease"]
    moved = len(tokens) > 1 or run["lease_lost_lines"]
    return "%s (%d token%s, %d lost)" % ("moved" if moved else "kept", len(tokens),
                                         "" if len(tokens) == 1 else "s",
                                         run["lease_lost_lines"])


def feeds_cell(run):
    f = run.get("feeds") or {}
    return ", ".join("%s: %s" % (SERVER_NAMES[n].split()[0], "+".join(f[n]) or "none")
                     for n in SERVERS if n in f)


def report(results, order):
    first = results[order[0]]
    lines = ["# Detection at %d wikis over two database servers, with faults"
             % (2 * first["wikis_per_server"]), "",
             "Generated by `tests/bench/bench_detection.py` (issue 21, \"Measure and report\"). "
             "Each label is one run of the benchmark on one binary; figures compare only "
             "within a run, and between labels only as far as the machine's load allowed "
             "(load averages below; a 2-core machine shared with other work, every run "
             "under `nice -n 19`).", ""]
    for label in order:
        r = results[label]
        lines.append("- **%s**: `%s`, commit %s, run on %s, %d cores, load average at "
                     "start %s; command `%s`; wikis created in %.0f s; window %d s, %d probes "
                     "a scenario, grace %d s. `[server HOST:PORT]` section (the second "
                     "server's credentials): %s." % (
                         label, r["binary"], r["commit"], r["date"], r["cores"],
                         " ".join(r["loadavg_start"]), r["command"], r["create_s"],
                         r["window_s"], r["probes"], r["grace_s"],
                         section_note(r)))
    sv = first["server_variables"]["main"]
    lines += ["", "Both servers at MariaDB's default settings (%s), log_bin ROW. %d wikis "
              "on each (a job table and platform rows; every 10th with 20 ready jobs, never "
              "drained: MediaWiki is a closed port). A scenario is a fresh sidecar with "
              "fresh coordination tables on the same wikis; it waits for every healthy "
              "server's first complete sweep, then opens the window: probe jobs are INSERTed "
              "on random cold wikis of the healthy servers in its first 80%%, and the wait "
              "is from the INSERT until the wiki's jd_wiki row shows ready jobs (polled every "
              "100 ms); \"never\": not seen within the grace after the window. p99 is the "
              "nearest rank. Detection's share is the scan user's plus the feed user's "
              "BUSY_TIME (USER_STATISTICS) over the window, per server, as a share of one "
              "core (wakes included: a wake's rescan is a scan statement; a statement waiting "
              "on a table lock counts as busy while it waits; a binary log dump "
              "thread's time is counted by MariaDB when its connection ends, after the "
              "window, so the feed user shows little); the sidecar's coordination writes "
              "(jd_wiki, leases; user `%s`, on the first server) are listed apart." % (
                  ", ".join("%s=%s" % kv for kv in sorted(sv.items())
                            if kv[0] not in ("log_bin", "binlog_format")),
                  first["wikis_per_server"], farm_mod.SIDECAR_USER), ""]
    for sc in sorted({s for r in results.values() for s in r["scenarios"]}):
        rows = [(label, results[label]["scenarios"].get(sc)) for label in order]
        rows = [(lb, r) for lb, r in rows if r]
        lines += ["## %s: %s" % (sc, SCENARIOS[sc]), "",
                  "| label | cold-wiki wait p50 s | p99 s | max s | seen | first server: p50 / max s "
                  "| second server: p50 / max s | detection share first / second server "
                  "| coordination share | sweeps: count: median, max s (first; second) | scanner lease "
                  "| feeds (dump connections) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, r in rows:
            w = wait_stats(r["waits_s"])
            per = {}
            for name in SERVERS:
                v = r["waits_s"].get(name)
                per[name] = ("%s / %s" % (fs(percentile(v, 50), 1), fs(v[-1], 1))
                             if v else "-")
            lines.append("| %s | %s | %s | %s | %d/%d | %s | %s | %s / %s | %s%% | %s; %s | %s | %s |"
                         % (label, fs(w["p50"]), fs(w["p99"]), fs(w["max"]),
                            r["seen"], r["probes"], per["main"], per["db2"],
                            share_cell(r, "main"), share_cell(r, "db2"),
                            fmt(100 * r["per_server"]["main"]["coord_share"], 2),
                            sweep_cell(r, "main"), sweep_cell(r, "db2"), lease_cell(r),
                            feeds_cell(r)))
        if len(rows) == 2:
            (la, a), (lb, b) = rows[1], rows[0]
            wa, wb = wait_stats(a["waits_s"]), wait_stats(b["waits_s"])
            lines.append("| %s / %s | %s | %s | %s | | | | %s / %s | | | | |" % (
                la, lb, ratio(wa["p50"], wb["p50"]), ratio(wa["p99"], wb["p99"]),
                ratio(wa["max"], wb["max"]),
                ratio(a["per_server"]["main"]["detection_share"],
                      b["per_server"]["main"]["detection_share"]),
                ratio(a["per_server"]["db2"]["detection_share"],
                      b["per_server"]["db2"]["detection_share"])))
        notes = []
        for label, r in rows:
            extra = ["warm-up %.0f s%s" % (r["warmup_s"], "" if r["warmup_complete"]
                                          else " (no complete sweep of every healthy server)")]
            if r.get("writer_inserts_per_s"):
                extra.append("writer %.0f inserts/s" % r["writer_inserts_per_s"])
            if r.get("locked_wiki"):
                extra.append("locked: %s" % r["locked_wiki"])
            # MediaWiki is a closed port: the drain's failures are expected, not news.
            warned = {m: n for m, n in (r.get("warnings") or {}).items()
                      if not str(m).startswith(("batch failed", "mediawiki breaker"))}
            if warned:
                extra.append("detection's warnings and errors logged: %s" % "; ".join(
                    "%s (%d)" % kv for kv in sorted(warned.items())))
            extra.append("mariadbd CPU share first / second server %s / %s" % tuple(
                fs(r["per_server"][n]["mysqld_cpu_share"], 2) for n in SERVERS))
            notes.append("- %s: %s." % (label, ", ".join(extra)))
        lines += [""] + notes + [""]
    lines += ["## Gauges at the end of each window", ""]
    for label in order:
        for sc, r in sorted(results[label]["scenarios"].items()):
            lines.append("- %s, %s: %s" % (label, sc, ", ".join(
                "%s=%s" % (k.replace("jobdrainer_", ""), fs(v, 3) if isinstance(v, float) else v)
                for k, v in sorted((r["gauges"] or {}).items()))))
    lines += ["", "Run the other label with `make bench-detection` (see the Makefile: the "
              "current build as `after`, beside the committed before JSON).", ""]
    return "\n".join(lines)


def section_note(r):
    acc = {s.get("server_section_accepted") for s in r["scenarios"].values()}
    if acc == {True}:
        return "accepted"
    if acc == {False}:
        ref = next(iter(r["scenarios"].values())).get("server_section_refusal") or ""
        return "refused by this binary, left out (%s)" % ref.splitlines()[0][:160] if ref else \
            "refused by this binary, left out"
    return "mixed: %s" % sorted(map(str, acc))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="the jobdrainer to measure")
    ap.add_argument("--label", default="after")
    ap.add_argument("--commit", help="the commit the binary was built from (default: a "
                    "COMMIT file beside it, or its git checkout)")
    ap.add_argument("--wikis", type=int, default=10000, help="wikis on each server")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--grace", type=int, default=120,
                    help="seconds after the window to wait for probes not yet seen")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--warmup-max", type=int, default=180)
    ap.add_argument("--scenarios", default="a,b,c,d,e")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--before-json", help="a label's JSON to put beside this one")
    ap.add_argument("--after-json", help="with --report-only: the second label's JSON")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--json", help="where this label's JSON goes "
                    "(default tests/bench/results/detection_LABEL.json)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "detection.md"))
    args = ap.parse_args()
    results, order = {}, []
    if args.before_json:
        with open(args.before_json) as f:
            r = json.load(f)
        results[r["label"]] = r
        order.append(r["label"])
    if args.report_only:
        if args.after_json:
            with open(args.after_json) as f:
                r = json.load(f)
            results[r["label"]] = r
            order.append(r["label"])
        write_report(args.out, report(results, order))
        return
    if not args.binary:
        ap.error("--binary (or --report-only)")
    if args.label in results:
        ap.error("--label %s is the label of --before-json" % args.label)
    binary = Binary(args.binary)
    json_path = args.json or os.path.join(HERE, "results", "detection_%s.json" % args.label)
    res = {"label": args.label, "binary": binary.version,
           "commit": binary_commit(args.binary, args.commit),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join(["tests/bench/bench_detection.py"] + sys.argv[1:]),
           "cores": os.cpu_count(), "loadavg_start": open("/proc/loadavg").read().split()[:3],
           "wikis_per_server": args.wikis, "window_s": args.window, "grace_s": args.grace,
           "probes": args.probes, "scenarios": {}}
    results[args.label] = res
    order.append(args.label)
    bench = Bench(args, binary)
    try:
        bench.start()
        res["create_s"] = bench.create_s
        res["server_variables"] = bench.server_variables()
        for n, sc in enumerate(args.scenarios.split(",")):
            t = time.monotonic()
            r = bench.run(sc, seed=args.wikis * 10 + n)
            r["seconds"] = time.monotonic() - t
            res["scenarios"][sc] = r
            w = wait_stats(r["waits_s"])
            log("%s %s (%.0fs): wait p50 %s p99 %s max %s (%d/%d seen), share %s / %s, %s",
                args.label, sc, r["seconds"], fs(w["p50"]), fs(w["p99"]), fs(w["max"]),
                r["seen"], r["probes"], share_cell(r, "main"), share_cell(r, "db2"),
                lease_cell(r))
            save_json(json_path, res)
            write_report(args.out, report(results, order))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
