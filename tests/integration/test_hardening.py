"""What an adversarial review found in the sidecar's edges, reproduced on the real farm:
an egress proxy in the environment must never see the signed RunJobs requests; a
MediaWiki host given as a bare IPv6 address is refused at start instead of failing every
batch; slow clients from one address cannot silence the probes; wikis' secrets do not
pile up in memory and the process is not dumpable; jd_lease does not grow as wikis come
and go."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from sidecar import BINARY, Sidecar, farm_ini, wait_until

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

    # Once it has gone, its address is served again. The server notices the closed
    # connections a moment after the client closes them: until then the address is
    # still at its limit and a new connection is reset (seen under ASan).
    def attacker_address_served():
        try:
            return get_from("127.0.0.1", port, "/healthz")[0] == 200
        except OSError:
            return False
    wait_until(attacker_address_served, timeout=10, what="the attacker's address served")
    assert pod.stop() == 0


def memory_count(pid, needle):
    """How many times needle occurs in the readable memory of process pid (root reads
    /proc/PID/mem even of a process that is not dumpable)."""
    count = 0
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]",
                                                                         "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            # In chunks (overlapping by the needle's length), so a large mapping is never
            # read into one buffer.
            chunk = 16 << 20
            for at in range(start, end, chunk):
                try:
                    mem.seek(at)
                    count += mem.read(min(chunk + len(needle) - 1, end - at)).count(needle)
                except OSError:
                    break
    return count


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ,
                    reason="AddressSanitizer's quarantine keeps freed blocks unreused and its"
                    " shadow mappings are terabytes: the count means nothing there")
def test_secrets_do_not_pile_up_in_memory_and_no_core_dumps(farm, tmp_path):
    domain = "secretcount.farm.test"
    w = farm.wikis.get(domain) or farm.add_wiki(domain)
    # Run as nobody: a process that is not dumpable has its /proc files owned by root
    # (a dumpable one's belong to its user), and only root may read its memory.
    workdir = tempfile.mkdtemp(prefix="jdsecrets-", dir="/tmp")
    os.chmod(workdir, 0o755)
    pod = Sidecar(workdir, "pod-secrets", farm_ini(farm, discovery={"interval": 1}))
    os.chmod(pod.ini, 0o644)
    try:
        pod.start(wrapper=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
        assert os.stat("/proc/%d/mem" % pod.pid).st_uid == 0, "the sidecar is dumpable"
        # Twenty discovery runs (interval 1 s), each reading every wiki's secret from
        # the platform: the workload whose leftovers are counted below, not a wait for
        # an event (the daemon exports no count of discovery runs, and logs one only
        # when the wiki list changes).
        time.sleep(20)
        counts = [memory_count(pod.pid, w.secret.encode()) for _ in range(3)]
        print("copies of the wiki's secret in the sidecar's memory:", counts)
        assert pod.stop() == 0
    finally:
        pod.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    # The live copies (the scanner's wiki list) and what the connection's read buffers
    # hold until the next statement overwrites them: 4 here. Before the result rows were
    # cleared, freed copies stayed behind as well: 7 after these 20 runs.
    assert 1 <= max(counts) <= 5, counts


ORPHAN_LEASES = ("SELECT COUNT(*) FROM jobdrainer.jd_lease l LEFT JOIN jobdrainer.jd_wiki w"
                 " ON w.scope = l.scope AND w.domain = l.name"
                 " WHERE w.domain IS NULL AND l.name <> '*scanner*'")


def test_lease_rows_of_gone_wikis_are_pruned(farm, sidecars):
    """Wikis come and go (75 names, 5 live at a time beside the farm's): jd_lease keeps
    rows for the live wikis only, not one for every name ever seen."""
    pod = sidecars("pod-churn", farm_ini(farm, discovery={"interval": 1}))
    churned = "SELECT COUNT(*) FROM jobdrainer.jd_lease WHERE name LIKE 'churn%%'"
    live, orphans, rows = [], [], []
    # Fifteen rounds of 2 s (about thirty discovery runs): without pruning the rows
    # pass the bound below by the fourth round and reach 75 by the last.
    for round_no in range(15):
        new = [farm.add_wiki("churn%d-%d.farm.test" % (round_no, i), create_db=False).domain
               for i in range(5)]
        for domain in live:
            farm.set_deleted(domain)
        live = new
        time.sleep(2)
        orphans.append(farm.sql(ORPHAN_LEASES)[0][0])
        rows.append(farm.sql(churned)[0][0])
    print("lease rows of wikis without a jd_wiki row, each round:", orphans)
    print("lease rows of churned names, each round:", rows)
    # A departed wiki's lease rows go in the same pass as its jd_wiki row: the live
    # five and the five leaving, with room for a slow pass (without pruning: every
    # name ever seen, up to 75).
    assert max(orphans) <= 5, orphans
    assert max(rows) <= 20, rows
    for domain in live:
        farm.set_deleted(domain)
    wait_until(lambda: farm.sql(churned)[0][0] == 0, timeout=60,
               what="the lease rows of the gone wikis to be pruned")
    assert farm.sql(ORPHAN_LEASES)[0][0] == 0
    assert pod.stop() == 0
