"""What an adversarial review found in the sidecar's edges, reproduced on the real farm:
an egress proxy in the environment must never see the signed RunJobs requests, and a
MediaWiki host given as a bare IPv6 address is refused at start instead of failing every
batch."""

import socket
import subprocess
import threading
import time

from sidecar import BINARY, farm_ini, wait_until

WIKI = "wiki1.farm.test"


class RecordingListener:
    """A TCP socket on loopback that records every connection made to it (a stand-in
    for an injected egress proxy); it answers nothing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def test_proxy_variables_never_carry_the_signed_requests(farm, sidecars):
    proxy = RecordingListener()
    try:
        url = "http://127.0.0.1:%d" % proxy.port
        env = {name: url for name in ("http_proxy", "HTTP_PROXY", "https_proxy",
                                      "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}
        env["no_proxy"] = env["NO_PROXY"] = ""
        farm.push_null_jobs(WIKI, 120)
        pod = sidecars("pod-proxy", farm_ini(farm), env=env)
        wait_until(lambda: farm.ready_jobs(WIKI) == 0, timeout=120,
                   what="the wiki drained with proxy variables set")
        posts = [e for e in farm.access_log_entries()
                 if e["request"].startswith("POST /w/index.php?jobdrainer_holder=pod-proxy")]
        assert posts, "Apache saw no POST from the sidecar"
        assert all(e["status"] == 200 for e in posts)
        assert proxy.connections == 0, "the proxy was contacted %d times" % proxy.connections
        assert pod.stop() == 0
    finally:
        proxy.close()


def check_config(ini):
    return subprocess.run([BINARY, "--config", str(ini), "--check-config"],
                          capture_output=True, text=True, timeout=30)


def test_bare_ipv6_mediawiki_host_is_refused_at_start(farm, tmp_path):
    ini = tmp_path / "v6.ini"
    ini.write_text(farm_ini(farm, mediawiki={"host": "::1"}))
    p = check_config(ini)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert ("[mediawiki] host: '::1' is not an IPv4 address, a bracketed IPv6 address "
            "([::1]) or a host name") in p.stderr


def test_bracketed_ipv6_mediawiki_host_is_accepted(farm, tmp_path):
    ini = tmp_path / "v6ok.ini"
    ini.write_text(farm_ini(farm, mediawiki={"host": "[::1]"}))
    p = check_config(ini)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def get_from(source, port, path, timeout=5):
    """GET http://127.0.0.1:port/path from the loopback address `source`: status, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
                  % path.encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/"):
        raise ConnectionError("closed without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


class SlowHeaders:
    """Connections from one address that send a request line, then one header byte
    every half second and never finish the request (slowloris)."""

    def __init__(self, port, n, source="127.0.0.1"):
        self.socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=(source, 0))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            self.socks.append(s)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        while not self.stopping.wait(0.5):
            for s in self.socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass

    def open_count(self):
        """How many of them the server still keeps open."""
        n = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                n += s.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
            s.setblocking(True)
        return n

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        for s in self.socks:
            s.close()


def test_slow_header_clients_cannot_silence_the_probes(farm, sidecars):
    pod = sidecars("pod-slowloris", farm_ini(farm))
    port = pod.http_port
    assert get_from("127.0.0.2", port, "/healthz")[0] == 200
    attack = SlowHeaders(port, 40)
    try:
        # Well past the old 10 s idle timeout, which the trickle kept resetting.
        answers = []
        for _ in range(12):
            try:
                answers.append(get_from("127.0.0.2", port, "/healthz", timeout=3)[0])
            except OSError as e:
                answers.append(repr(e))
            time.sleep(1)
        held = attack.open_count()
    finally:
        attack.close()
    assert answers == [200] * len(answers), answers
    # The attacker kept its per-address share open, and no more.
    assert 1 <= held <= 8, held
    assert get_from("127.0.0.1", port, "/healthz")[0] == 200
    assert pod.stop() == 0
