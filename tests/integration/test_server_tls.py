"""Database servers are a trust boundary (issue 21): explicit credentials and TLS, on a
real farm with a second MariaDB server that offers TLS (a CA and a server certificate
for 127.0.0.1 made with openssl for the test).

- A named server's scan login is its [server HOST:PORT] section's; [platform_db]'s
  password never goes there by inheritance. The server's own general log shows who
  logged in: the section's user, over TLS (its account REQUIRES SSL), never the
  platform's user. A server allowed without any credentials is a configuration error
  at start, before any connection.
- tls = verify with the right CA scans (and drains) the server's wikis; with a wrong CA,
  or without one (the system's CAs do not know the test's), the connection is refused
  with a line naming the server, and no login reaches the server (no "Connect" in its
  general log: the client hangs up during the TLS handshake, before the login packet).
- tls = on against a server without TLS is refused: never a fall-back to clear text."""

import os
import subprocess
import time

import pytest

from farm import temporary_farm
from sidecar import farm_ini, wait_until
from test_db_servers import QUERY

ON_TLS = "ontls.farm.test"  # a wiki on the TLS server
MAIN = "tlsmain.farm.test"  # a wiki on the main server (no TLS)
SCAN_USER, SCAN_PASSWORD = "jdscan", "scan-over-tls-4711"
PLATFORM_USER = "jobdrainer"  # farm_ini's [platform_db] user
SCAN_ERRORS = 'jobdrainer_errors_total{kind="scan"}'


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=120)


def make_certs(d):
    """ca.pem (the right CA), server.pem/server-key.pem signed by it for 127.0.0.1 (CN
    and IP SAN), other-ca.pem (a CA that signed nothing here)."""
    os.makedirs(d, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", ca + "-key.pem", "-out", ca + ".pem",
                "-subj", "/CN=jobdrainer test %s" % ca, cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem",
            cwd=d)
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)  # mariadbd may run as another user
    return {name: os.path.join(d, name + ".pem") for name in ("ca", "other-ca", "server",
                                                              "server-key")}


@pytest.fixture(scope="module")
def tls_farm():
    with temporary_farm("jdtls-") as f:
        certs = make_certs(f.path("tls-certs"))
        # The farm starts every server with _mysqld_args(); this one also offers TLS.
        plain_args = f._mysqld_args
        f._mysqld_args = lambda: plain_args() + [
            "--ssl-ca=" + certs["ca"], "--ssl-cert=" + certs["server"],
            "--ssl-key=" + certs["server-key"]]
        try:
            db = f.add_db_server("tls")
        finally:
            f._mysqld_args = plain_args
        assert f.sql("SHOW GLOBAL VARIABLES LIKE 'have_ssl'", server="tls")[0][1] == "YES"
        f.add_wiki(MAIN)
        f.add_wiki(ON_TLS, db_server="tls")
        # The scan's own user on both servers: over TLS only where TLS is offered.
        for server, require in (("tls", " REQUIRE SSL"), (None, "")):
            for host in ("127.0.0.1", "localhost"):
                f.sql("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'%s"
                      % (SCAN_USER, host, SCAN_PASSWORD, require), server=server)
                f.sql("GRANT SELECT ON `mwdb\\_%%`.* TO '%s'@'%s'" % (SCAN_USER, host),
                      server=server)
            # Who logs in, as the server saw it (failed logins included).
            f.sql("SET GLOBAL log_output = 'TABLE'", server=server)
            f.sql("SET GLOBAL general_log = 1", server=server)
        yield f, db, certs


def logins(farm, user, server="tls"):
    """The server's "Connect" lines of `user` (a failed login is one too); server None:
    the main one."""
    return farm.sql("SELECT argument FROM mysql.general_log WHERE command_type = 'Connect' "
                    "AND argument LIKE %s", (user + "@%",), server=server)


def ssl_accepts(farm):
    return int(farm.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'", server="tls")[0][1])


def ini(farm, db, server=None, **more):
    sections = {
        "discovery": {"query": QUERY, "interval": 1},
        "mediawiki": {"maxjobs": 10, "maxtime": 5, "timeout_allowance": 5},
        "scan_db": {"query_timeout": 3, "connect_timeout": 3},
        "scan": {"interval": 1, "full_interval": 2},
        "drain": {"time_slice": 1, "backoff_base": 1, "backoff_max": 5},
    }
    if server is not None:
        sections["server " + db.address] = server
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


def scan_failures(pod, server):
    return [l for l in pod.lines() if l.get("msg") == "scan failed"
            and server in l.get("error", "")]


@pytest.mark.parametrize("mode", ["verify", "on"])
def test_a_server_section_login_over_tls_scans_and_drains(tls_farm, sidecars, mode):
    farm, db, certs = tls_farm
    accepts, platform_logins = ssl_accepts(farm), len(logins(farm, PLATFORM_USER))
    server = {"user": SCAN_USER, "password": SCAN_PASSWORD, "tls": mode}
    if mode == "verify":
        server["tls_ca"] = certs["ca"]
    pod = sidecars("tls-" + mode, ini(farm, db, server=server))
    farm.insert_probe_jobs(ON_TLS, 5)
    farm.insert_probe_jobs(MAIN, 5)
    wait_until(lambda: farm.ready_jobs(ON_TLS) == 0 and farm.ready_jobs(MAIN) == 0,
               timeout=120, what="the wikis on both servers drained")
    assert not scan_failures(pod, db.address), pod.raw()[-3000:]
    # The section's user logged in, over TLS (REQUIRE SSL, and the server counted the
    # handshakes); the platform's user never tried this server.
    assert logins(farm, SCAN_USER)
    assert ssl_accepts(farm) > accepts
    assert len(logins(farm, PLATFORM_USER)) == platform_logins
    assert pod.stop() == 0


@pytest.mark.parametrize("ca", ["other-ca", None])
def test_verify_refuses_a_certificate_it_cannot_trust(tls_farm, sidecars, ca):
    farm, db, certs = tls_farm
    before = len(logins(farm, SCAN_USER))
    server = {"user": SCAN_USER, "password": SCAN_PASSWORD, "tls": "verify"}
    if ca:
        server["tls_ca"] = certs[ca]
    pod = sidecars("tls-untrusted-%s" % ca, ini(farm, db, server=server))
    line = wait_until(lambda: scan_failures(pod, db.address), timeout=60,
                      what="the refused connection logged")[0]
    assert "(tls = verify)" in line["error"], line
    assert "certificate" in line["error"].lower() or "SSL" in line["error"], line
    # The main server's wikis are not held by it.
    farm.insert_probe_jobs(MAIN, 3)
    wait_until(lambda: farm.ready_jobs(MAIN) == 0, timeout=120,
               what="the main server's wiki drained beside the refused one")
    # The job on the TLS server stays: nobody could read its table.
    farm.insert_probe_jobs(ON_TLS, 1)
    scans = pod.metrics()["jobdrainer_scans_total"]
    wait_until(lambda: pod.metrics()["jobdrainer_scans_total"] >= scans + 2, timeout=60,
               what="two more scans")
    assert farm.ready_jobs(ON_TLS) == 1
    assert pod.stop() == 0
    # The login never left the client: the handshake failed before it.
    assert len(logins(farm, SCAN_USER)) == before
    farm.sql("DELETE FROM %s" % farm.wiki(ON_TLS).job_table, server="tls")


@pytest.mark.parametrize("mode,why", [
    # libmariadb refuses before the login only when it verifies the certificate ...
    ("verify", "SSL is required, but the server does not support it"),
    # ... else it falls back to clear text, and db_check_tls refuses after the login.
    ("on", "offers no TLS (tls = on): refused after the login, before any query"),
])
def test_tls_against_a_server_without_tls_is_refused(tls_farm, sidecars, mode, why):
    farm, db, _ = tls_farm
    before = len(logins(farm, SCAN_USER, server=None))
    # [scan_db] is the main server, which offers no TLS; discovery ([platform_db]) is
    # plain TCP still.
    pod = sidecars("tls-required-" + mode, ini(
        farm, db, scan_db={"tls": mode, "user": SCAN_USER, "password": SCAN_PASSWORD,
                         "database": ""},
        scan={"allowed_servers": ""}))
    line = pod.wait_for(lambda l: l.get("msg") == "scan failed"
                        and "scan_db" in l.get("error", ""), timeout=60,
                        what="the scan's refusal logged")
    assert "(tls = %s)" % mode in line["error"] and why in line["error"], line
    # Nothing was read in clear: the main wiki's job stays, scan after failed scan.
    farm.insert_probe_jobs(MAIN, 1)
    failed = pod.metrics()[SCAN_ERRORS]
    wait_until(lambda: pod.metrics()[SCAN_ERRORS] >= failed + 2, timeout=60,
               what="two more refused scans")
    assert farm.ready_jobs(MAIN) == 1
    assert pod.stop() == 0
    if mode == "verify":
        assert len(logins(farm, SCAN_USER, server=None)) == before
    farm.sql("DELETE FROM %s" % farm.wiki(MAIN).job_table)


def test_a_server_allowed_without_credentials_is_a_config_error(tls_farm, sidecars):
    """[scan_db] inherits [platform_db]'s login; allowing another server without giving
    it one is refused at start: the platform's password is not sent there."""
    farm, db, _ = tls_farm
    before = len(logins(farm, PLATFORM_USER))
    pod = sidecars("tls-nologin", ini(farm, db, scan={"allowed_servers": db.address}),
                   start=False)
    pod.launch()
    assert pod.proc.wait(timeout=60) != 0
    out = pod.raw()
    assert ("[scan] allowed_servers: no credentials for database server %s: add [server %s]"
            % (db.address, db.address)) in out, out
    assert len(logins(farm, PLATFORM_USER)) == before
    # A discovery row naming it with a section that gives no user: refused alike.
    pod = sidecars("tls-nouser", ini(farm, db, server={"tls": "on"}), start=False)
    pod.launch()
    assert pod.proc.wait(timeout=60) != 0
    assert "[server %s]: no credentials" % db.address in pod.raw(), pod.raw()
    assert len(logins(farm, PLATFORM_USER)) == before
