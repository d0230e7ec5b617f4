"""Database servers are a trust boundary (issue 21 item 3), on a real farm: the scan logs
in with [scan_db]'s user and password (set there, as the file must for other servers),
so it connects only to the servers the operator allowed in the INI ([scan] allowed_servers, besides [scan_db]'s and [platform_db]'s
own). A discovery row naming another server is skipped and reported, with no
connection attempted (a listener of the test's own records every connection); and a
server that asks for a plugin revealing the password (mysql_clear_password, dialog) is
refused: the password never reaches it (a fake MySQL server of the test's own, which
speaks the handshake and records every byte it receives)."""

import socket
import struct
import threading
import time

import pytest

from farm import temporary_farm
from sidecar import farm_ini, wait_until
from test_db_servers import QUERY

MAIN = ["trust1.farm.test", "trust2.farm.test"]
ELSEWHERE = "elsewhere.farm.test"  # its row names a server nobody allowed
HOSTILE = "hostile.farm.test"  # its row names an allowed server that asks for the password
SCAN_PASSWORD = b"jdpass"  # [scan_db]'s own (the farm's scan user), given to every server
FEED_PASSWORD = b"feed-secret-4711"
SKIPPED = "discovery: wiki skipped"


class Listener:
    """A TCP port on loopback that counts the connections made to it; handle(conn, n)
    serves the n-th (here: closes it at once)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self.handle, args=(conn, self.count - 1),
                             daemon=True).start()

    def handle(self, conn, n):
        conn.close()

    def close(self):
        self.closed = True
        self.sock.close()


class HungServer(Listener):
    """Accepts connections and never says a word (a server stopped mid-way, or a
    black hole behind a proxy)."""

    def __init__(self):
        self.held = []
        super().__init__()

    def handle(self, conn, n):
        self.held.append(conn)

    def close(self):
        super().close()
        for conn in self.held:
            conn.close()


def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


# CLIENT_MYSQL(1) | FOUND_ROWS | LONG_FLAG | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS
# | SECURE_CONNECTION | MULTI_STATEMENTS | MULTI_RESULTS | PLUGIN_AUTH
CAPABILITIES = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x80000


def read_packet(conn):
    """One client packet (header and body), or what came before the client hung up."""
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return head
        head += chunk
    n = head[0] | head[1] << 8 | head[2] << 16
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            break
        body += chunk
    return head + body


def greeting(plugin):
    """A MariaDB 10.11 server's first packet, naming `plugin` for the first answer."""
    scramble = b"abcdefgh" + b"ijklmnopqrst"
    return packet(0, b"\x0a" + b"5.5.5-10.11.99-MariaDB-fake\0" + struct.pack("<I", 7)
                  + scramble[:8] + b"\0" + struct.pack("<H", CAPABILITIES & 0xFFFF)
                  + b"\x2d" + struct.pack("<H", 2) + struct.pack("<H", CAPABILITIES >> 16)
                  + bytes([21]) + b"\0" * 10 + scramble[8:] + b"\0" + plugin + b"\0")


class HostileServer(Listener):
    """Speaks the MySQL handshake and asks each client, in turn, for its password in a
    way that reveals it: an auth switch to mysql_clear_password, a greeting that names
    mysql_clear_password, an auth switch to dialog (with a password question). Every
    byte received is kept per connection."""

    MODES = ("switch_clear", "greet_clear", "switch_dialog")

    def __init__(self):
        self.received = []  # (mode, bytes) per connection, once it ended
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn, n):
        self._serve(conn, self.MODES[n % len(self.MODES)])

    def _serve(self, conn, mode):
        got = b""
        conn.settimeout(5)
        try:
            conn.sendall(greeting(b"mysql_clear_password" if mode == "greet_clear"
                                  else b"mysql_native_password"))
            got += self._read_packet(conn)
            if mode == "switch_clear":
                conn.sendall(packet(2, b"\xfemysql_clear_password\0"))
            elif mode == "switch_dialog":
                # Dialog's question: 4 = "a password, the last question".
                conn.sendall(packet(2, b"\xfedialog\0" + b"\x04Password: "))
            # Whatever comes next (the password, in clear, if the client gives it).
            while True:
                more = conn.recv(65536)
                if not more:
                    break
                got += more
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.received.append((mode, got))

    _read_packet = staticmethod(read_packet)

    def modes_seen(self):
        with self.lock:
            return {m for m, _ in self.received}


@pytest.fixture(scope="module")
def trust_farm():
    listener, hostile = Listener(), HostileServer()
    try:
        with temporary_farm("jdtrust-") as f:
            for d in MAIN + [ELSEWHERE, HOSTILE]:
                f.add_wiki(d)
            for d, port in ((ELSEWHERE, listener.port), (HOSTILE, hostile.port)):
                f.sql("INSERT INTO farm_wiki_servers (wiki_id, server) VALUES (%s, %s)",
                      (f.wiki(d).wiki_id, "127.0.0.1:%d" % port), db="apidb")
            yield f, listener, hostile
    finally:
        listener.close()
        hostile.close()


def ini(farm, **more):
    sections = {
        "discovery": {"query": QUERY, "interval": 1},
        "mediawiki": {"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5},
        # Its own login: [platform_db]'s is never sent to another server (config_load
        # refuses an allowed server without one; test_server_tls.py).
        "scan_db": {"query_timeout": 3, "connect_timeout": 3, "user": "jobdrainer",
                    "password": SCAN_PASSWORD.decode()},
        "scan": {"interval": 1, "full_interval": 2},
        "drain": {"time_slice": 1, "backoff_base": 1, "backoff_max": 5},
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


def skipped(pod, wiki):
    return [l for l in pod.lines() if l.get("msg") == SKIPPED and l.get("wiki") == wiki]


def test_a_server_nobody_allowed_is_never_connected_to(trust_farm, sidecars):
    farm, listener, hostile = trust_farm
    # Only the hostile server is allowed, under another spelling of its name (the
    # allow-list and discovery's rows are compared in their canonical form).
    pod = sidecars("trust-allow", ini(farm, scan={"allowed_servers":
                                                  "LOCALHOST:3306, 127.0.0.1:0%d" % hostile.port}))
    for d in MAIN:
        farm.insert_probe_jobs(d, 10)
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in MAIN), timeout=120,
               what="the allowed servers' wikis drained")
    line = wait_until(lambda: skipped(pod, ELSEWHERE), timeout=30,
                      what="the row naming a server nobody allowed reported")[0]
    assert line["reason"] == ("database server 127.0.0.1:%d is not in [scan] allowed_servers"
                              " nor a [server] section: not connected to" % listener.port), line
    assert pod.metrics()["jobdrainer_wikis_skipped"] == 1
    # The allowed one, named differently, is not skipped: it is tried (and refused).
    assert not skipped(pod, HOSTILE)
    wait_until(lambda: hostile.count >= 1, timeout=30, what="the allowed server tried")
    # Several discoveries and sweeps later, nobody ever knocked on the other server.
    scans = pod.metrics()["jobdrainer_scans_total"]
    wait_until(lambda: pod.metrics()["jobdrainer_scans_total"] >= scans + 3, timeout=60,
               what="three more scans")
    assert listener.count == 0
    assert len(skipped(pod, ELSEWHERE)) == 1  # logged once while the row stays bad
    assert pod.stop() == 0
    # The listener does record a connection: its silence above means something.
    socket.create_connection(("127.0.0.1", listener.port)).close()
    wait_until(lambda: listener.count == 1, timeout=10, what="the check connection")


def test_a_server_asking_for_the_password_in_clear_never_gets_it(trust_farm, sidecars):
    farm, listener, hostile = trust_farm
    before = hostile.count
    pod = sidecars("trust-hostile", ini(
        farm, scan={"allowed_servers": "127.0.0.1:%d" % hostile.port},
        # The binary log feed's own connection, pointed at the same server.
        binlog={"enabled": "true", "host": "127.0.0.1", "port": hostile.port,
                "user": "feed", "password": FEED_PASSWORD.decode(), "retry_interval": 1}))
    wait_until(lambda: hostile.count >= before + 6 and
               hostile.modes_seen() == set(HostileServer.MODES), timeout=90,
               what="the scan and the feed tried the hostile server in each of its ways")
    wait_until(lambda: len(hostile.received) >= before + 6, timeout=30,
               what="those connections ended")
    with hostile.lock:
        received = list(hostile.received)
    for mode, got in received:
        assert SCAN_PASSWORD not in got and FEED_PASSWORD not in got, (mode, got)
        # Nothing after the refused request: the client hung up.
        if mode != "greet_clear":
            n = got[0] | got[1] << 8 | got[2] << 16
            assert len(got) == 4 + n, (mode, got)
    failed = [l for l in pod.lines() if l.get("msg") == "scan failed"
              and "127.0.0.1:%d" % hostile.port in l.get("error", "")]
    assert failed, pod.raw()[-3000:]
    # libmariadb's refusal (error 5010; it misprints the plugin's name after a switch).
    assert "restricted_auth" in failed[0]["error"], failed[0]
    # The feed's connection was refused the same way (the rule is db_guard_auth's).
    feed = pod.wait_for(lambda l: l.get("msg") == "binary log feed stopped"
                        and "restricted_auth" in l.get("error", ""), timeout=30,
                        what="the feed's refusal logged")
    assert feed, feed
    # The other wikis are not held by it.
    for d in MAIN:
        farm.insert_probe_jobs(d, 5)
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in MAIN), timeout=120,
               what="the default server's wikis drained beside the hostile one")
    assert pod.stop() == 0


def test_a_hung_feed_server_does_not_hold_the_exit(trust_farm, sidecars):
    """The binary log feed's connection is cut at shutdown, also while it is still
    logging in: a server that accepts and never answers does not hold the exit for
    [binlog] connect_timeout."""
    farm = trust_farm[0]
    hung = HungServer()
    try:
        pod = sidecars("trust-hung-feed", ini(
            farm, sidecar={"shutdown_timeout": 3},
            binlog={"enabled": "true", "host": "127.0.0.1", "port": hung.port,
                    "connect_timeout": 120}))
        wait_until(lambda: hung.count >= 1, timeout=60, what="the feed logging in")
        t0 = time.monotonic()
        assert pod.stop(timeout=150) == 0
        took = time.monotonic() - t0
    finally:
        hung.close()
    # shutdown_timeout (3 s) + the 2 s of the shutdown path's statements + slack for a
    # shared CPU; without the cut, the feed's login waited out connect_timeout (120 s).
    assert took < 3 + 2 + 4, took
