"""One detector per database server (issue 21, "What we saw" 1), on a real farm: a job
table under LOCK TABLES ... WRITE beside healthy wikis on the main server, a second real
server with healthy wikis, and a third server that accepts the login and then never
answers a SELECT (a fake MariaDB of the test's own). The healthy wikis' new jobs are
found and run while the hung server's statement is still in flight (an order of events,
not a timing), and the scanner lease never moves over a window longer than its TTL. A
scan connection killed mid-statement is reported as its server's failure, not as its
wikis' unreadable tables."""

import threading
import time

import pytest

from farm import temporary_farm
from sidecar import farm_ini, wait_until
from test_db_servers import QUERY
from test_server_trust import Listener, greeting, packet, read_packet

MAIN = ["dmain1.farm.test", "dmain2.farm.test", "dmain3.farm.test"]
LOCKED = "dlocked.farm.test"
SECOND = ["dsecond1.farm.test", "dsecond2.farm.test"]
HUNG = "dhung.farm.test"  # its row names the fake server that never answers a SELECT
LEASE_TTL = 15
# The client's read timeout: a SELECT on the hung server is in flight this long.
QUERY_TIMEOUT = 60
UNREADABLE = "wiki skipped: its job table cannot be read"
LOST = ("2013", "2006", "1927", "Lost connection", "killed")

# OK packet: no rows affected, no insert id, autocommit, no warnings.
OK = b"\x00\x00\x00\x02\x00\x00\x00"


class SilentServer(Listener):
    """Speaks MariaDB's handshake, accepts any login, answers each SET with OK (the
    session settings a client sends first) and then reads every other statement and
    never answers. Records each unanswered statement as [start, end]: end is when the
    client hung up (None while it is still in flight)."""

    def __init__(self):
        self.statements = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn, n):
        pending = None
        try:
            conn.sendall(greeting(b"mysql_native_password"))
            read_packet(conn)
            conn.sendall(packet(2, OK))
            while True:
                got = read_packet(conn)
                if len(got) < 5:
                    break
                if got[4] == 0x03 and got[5:8].upper() == b"SET":
                    conn.sendall(packet(1, OK))
                    continue
                if pending is None:
                    pending = [time.time(), None]
                    with self.lock:
                        self.statements.append(pending)
        except OSError:
            pass
        finally:
            if pending is not None:
                with self.lock:
                    pending[1] = time.time()
            conn.close()

    def in_flight(self):
        """The statement the client is waiting on now: [start, None], or None."""
        with self.lock:
            return next((s for s in self.statements if s[1] is None), None)


@pytest.fixture(scope="module")
def det_farm():
    silent = SilentServer()
    try:
        with temporary_farm("jddetect-") as f:
            db2 = f.add_db_server("db2")
            for d in MAIN + [LOCKED, HUNG]:
                f.add_wiki(d)
            for d in SECOND:
                f.add_wiki(d, db_server="db2")
            f.sql("INSERT INTO farm_wiki_servers (wiki_id, server) VALUES (%s, %s)",
                  (f.wiki(HUNG).wiki_id, "127.0.0.1:%d" % silent.port), db="apidb")
            yield f, db2, silent
    finally:
        silent.close()


def ini(farm, db2, silent, **more):
    sections = {
        "discovery": {"query": QUERY, "interval": 2},
        "mediawiki": {"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5},
        # One login for every server, said in [scan_db] itself (never [platform_db]'s).
        "scan_db": {"query_timeout": QUERY_TIMEOUT, "connect_timeout": 3,
                    "user": "jobdrainer", "password": "jdpass"},
        "scan": {"interval": 1, "full_interval": 2,
                 "allowed_servers": "%s 127.0.0.1:%d" % (db2.address, silent.port)},
        "coordination": {"lease_ttl": LEASE_TTL, "safety_margin": 2, "renew_interval": 3,
                         "poll_interval_ms": 200},
        "drain": {"time_slice": 1, "backoff_base": 1, "backoff_max": 5},
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


def lease_lines(pods):
    return [l for p in pods for l in p.lines()
            if l.get("msg") in ("scanner lease taken", "scanner lease lost")]


def test_a_locked_table_and_a_hung_server_hold_only_their_own_wikis(det_farm, sidecars):
    farm, db2, silent = det_farm
    locker = farm._root_conn()
    with locker.cursor() as cur:
        cur.execute("LOCK TABLES %s WRITE" % farm.wiki(LOCKED).job_table)
    try:
        pods = [sidecars("det%d" % i, ini(farm, db2, silent)) for i in (1, 2)]
        # The hung server holds a statement: detection of the others goes on meanwhile.
        hung = wait_until(silent.in_flight, timeout=60, what="a SELECT hung on the fake server")
        t_start = time.monotonic()
        for d in MAIN + SECOND:
            farm.insert_probe_jobs(d, 10)
        wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in MAIN + SECOND), timeout=120,
                   what="healthy wikis on both real servers drained")
        # Decided by order: every healthy job was found and run before the hung
        # statement ended (the client still waits on it: its read timeout is 60 s).
        assert hung[1] is None and silent.in_flight() is hung, (hung, silent.statements)
        # The locked wiki is its own: reported once, by its own statement's limit.
        lines = [l for p in pods for l in p.lines()]
        locked = [l for l in lines if l.get("msg") == UNREADABLE and l.get("wiki") == LOCKED]
        assert len(locked) == 1, locked
        assert "1205" in locked[0]["error"] or "1969" in locked[0]["error"], locked[0]
        assert not [l for l in lines if l.get("msg") == UNREADABLE and l.get("wiki") != LOCKED]
        # The lease stays where it is for longer than its TTL: taken once, never lost.
        time.sleep(max(0, t_start + LEASE_TTL + 10 - time.monotonic()))
        roles = lease_lines(pods)
        assert [l["msg"] for l in roles] == ["scanner lease taken"], roles
        # The hung server is reported as down when its read timeout cuts the statement;
        # its wiki is never blamed.
        holder = next(p for p in pods if p.metrics()["jobdrainer_scanner_lease_held"])
        failed = holder.wait_for(lambda l: l.get("msg") == "scan failed"
                                 and l.get("server") == "127.0.0.1:%d" % silent.port,
                                 timeout=QUERY_TIMEOUT + 30, what="the hung server's failure")
        assert any(s in failed["error"] for s in LOST), failed
        assert not [l for l in holder.lines()
                    if l.get("msg") == UNREADABLE and l.get("wiki") == HUNG]
        assert lease_lines(pods) == roles
        # Shutdown is prompt with a statement in flight on the hung server.
        t0 = time.monotonic()
        for p in pods:
            assert p.stop() == 0
        assert time.monotonic() - t0 < 30
    finally:
        locker.close()


def test_a_killed_scan_connection_is_its_servers_failure(det_farm, sidecars):
    """The scan connection killed mid-statement (the statement waits on the locked
    table, so it is caught in flight): "scan failed" with the server, no wiki reported
    unreadable for it."""
    farm, db2, silent = det_farm
    locker = farm._root_conn()
    with locker.cursor() as cur:
        cur.execute("LOCK TABLES %s WRITE" % farm.wiki(LOCKED).job_table)
    try:
        pod = sidecars("det-kill", ini(farm, db2, silent))

        def waiting_scan():
            rows = farm.sql("SELECT id FROM information_schema.processlist WHERE user ="
                            " 'jobdrainer' AND state LIKE 'Waiting for table metadata lock%%'"
                            " AND info LIKE '%%job%%'")
            return rows[0][0] if rows else None

        victim = wait_until(waiting_scan, timeout=60, interval=0.02,
                            what="a scan statement waiting on the locked table")
        farm.sql("KILL CONNECTION %d" % victim)
        failed = pod.wait_for(lambda l: l.get("msg") == "scan failed"
                              and any(s in l.get("error", "") for s in LOST), timeout=30,
                              what="the killed connection reported as the server's failure")
        assert failed.get("server") == "127.0.0.1:%d" % farm.mysql_port, failed
        pod.wait_for(lambda l: l.get("msg") == "recovered" and l.get("after") == "scan failed"
                     and l.get("server") == failed["server"], timeout=30,
                     what="the server back at the next attempt")
        blamed = [l for l in pod.lines() if l.get("msg") == UNREADABLE
                  and any(s in l.get("error", "") for s in LOST)]
        assert not blamed, blamed
        assert pod.stop() == 0
    finally:
        locker.close()
