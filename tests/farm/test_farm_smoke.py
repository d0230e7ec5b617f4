"""Smoke test of the test farm (farm.py): a real MariaDB + Apache/mod_php + MediaWiki 1.39
farm with 2 wikis drains real jobs through a signed Special:RunJobs POST, the way the
jobdrainer sidecar will, and stops leaving no process behind.

Run: /usr/bin/python3 -m pytest -q tests/farm/test_farm_smoke.py   (as root, like CI)
"""

import hashlib
import hmac
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farm as farmlib  # noqa: E402

W1, W2 = "wiki1.farm.test", "wiki2.farm.test"


def php_urlencode(s):
    """Independent of farm.py: PHP urlencode() keeps A-Za-z0-9_.- and turns ' ' into '+'."""
    out = []
    for b in str(s).encode():
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "_.-"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def sign(fields, secret):
    data = "&".join("%s=%s" % (php_urlencode(k), php_urlencode(v))
                    for k, v in sorted(fields.items()) if k != "signature")
    return hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest()


def post_runjobs(farm, domain, secret, maxjobs=1000, maxtime=20, sigexpiry=None):
    """A signed synchronous Special:RunJobs POST with urllib; returns (status, body)."""
    fields = {"title": "Special:RunJobs", "tasks": "jobs", "maxjobs": str(maxjobs),
              "maxtime": str(maxtime), "async": "0", "stats": "1",
              "sigexpiry": str(sigexpiry if sigexpiry is not None else int(time.time()) + 30)}
    fields["signature"] = sign(fields, secret)
    req = urllib.request.Request(
        "http://127.0.0.1:%d/w/index.php" % farm.http_port,
        data=urllib.parse.urlencode(fields).encode(), method="POST",
        headers={"Host": domain, "User-Agent": "farm-smoke-test"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def farm_processes(d):
    """pids of live processes whose command line names the farm dir."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if d in cmd and state != "Z":
            found.append((int(entry), state, cmd))
    return found


@pytest.fixture(scope="module")
def farm():
    d = tempfile.mkdtemp(prefix="jdfarm-smoke-", dir="/tmp")
    f = farmlib.Farm(d)
    try:
        f.start(wikis=2)
        yield f
    finally:
        f.stop()
    left = farm_processes(d)
    assert left == [], "farm processes left after stop(): %s" % left
    shutil.rmtree(d)


def test_signature_vector():
    fields = {"async": "0", "maxjobs": "100", "maxtime": "30", "sigexpiry": "1700000060",
              "stats": "1", "tasks": "jobs", "title": "Special:RunJobs"}
    secret = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sign(fields, secret) == "eccf9dcde9e5eee5b5bb91fcb4b739ff40bd78db"
    assert farmlib.runjobs_signature(fields, secret) == "eccf9dcde9e5eee5b5bb91fcb4b739ff40bd78db"
    assert farmlib.php_urlencode("a b~:/é") == php_urlencode("a b~:/é") == "a+b%7E%3A%2F%C3%A9"


def test_farm_json_describes_the_farm(farm):
    with open(os.path.join(farm.dir, "farm.json")) as f:
        desc = json.load(f)
    assert desc["mysql"]["port"] == farm.mysql_port
    assert desc["http"]["port"] == farm.http_port
    assert [w["domain"] for w in desc["wikis"]] == [W1, W2]
    # The platform database lists both wikis with their secrets, readable by the sidecar.
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=farm.mysql_port,
                           user=desc["mysql"]["sidecar_user"],
                           password=desc["mysql"]["sidecar_password"])
    with conn, conn.cursor() as cur:
        cur.execute("SELECT w.domain, d.name, d.prefix, d.version, s.value FROM apidb.wikis w "
                    "JOIN apidb.wiki_dbs d ON d.wiki_id = w.id JOIN apidb.wiki_settings s "
                    "ON s.wiki_id = w.id AND s.name = 'wgSecretKey' "
                    "WHERE w.deleted_at IS NULL ORDER BY w.id")
        rows = cur.fetchall()
        assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
            (w.domain, w.dbname, w.prefix, w.version, w.secret)
            for w in (farm.wiki(W1), farm.wiki(W2))]
        cur.execute("SELECT COUNT(*) FROM %s" % farm.wiki(W1).job_table)


def test_unknown_host_gets_404(farm):
    status, body = farm.http("GET", "/w/index.php", "nope.farm.test")
    assert status == 404 and b"no such wiki" in body


def test_signed_runjobs_drains_null_jobs_and_real_edits(farm):
    farm.push_null_jobs(W1, 50)
    scenario = farm.make_link_jobs(W1, pages=3)
    farm.edit(W2, "Smoke page", "Links to [[Somewhere]].")
    assert farm.ready_jobs(W1, "null") == 50
    assert farm.ready_jobs(W1, "refreshLinks") >= 1
    assert farm.links_to(W1, scenario["new_target"]) == []  # jobs not run yet
    assert farm.links_to(W1, scenario["old_target"]) == scenario["pages"]
    w2_before = farm.ready_jobs(W2)

    status, body = post_runjobs(farm, W1, farm.wiki(W1).secret)
    assert status == 200, body[:500]
    result = json.loads(body)
    assert result["reached"] == "none-ready"
    assert all(j["status"] == "ok" for j in result["jobs"])
    assert sum(j["type"] == "null" for j in result["jobs"]) == 50
    assert farm.ready_jobs(W1) == 0 and farm.total_jobs(W1) == 0
    assert farm.links_to(W1, scenario["new_target"]) == scenario["pages"]
    assert farm.links_to(W1, scenario["old_target"]) == []
    assert farm.transcluders(W1, "FarmLinks") == scenario["pages"]
    assert farm.ready_jobs(W2) == w2_before  # one wiki's run leaves the other alone

    # The access log shows the request with its Host, status and duration.
    entries = [e for e in farm.access_log_entries() if e["user_agent"] == "farm-smoke-test"]
    assert entries[-1]["host"] == W1 and entries[-1]["status"] == 200
    assert entries[-1]["request"] == "POST /w/index.php HTTP/1.1"
    assert entries[-1]["duration_us"] > 0

    status, body = post_runjobs(farm, W2, farm.wiki(W2).secret, maxjobs=100)
    assert status == 200 and json.loads(body)["reached"] in ("none-ready", "job-limit")
    if w2_before:
        assert farm.ready_jobs(W2) < w2_before
    assert farm.links_to(W2, "Somewhere") == ["Smoke_page"]


def test_a_wiki_on_a_second_database_server(farm):
    """Farms spread wikis over several servers: MediaWiki serves this wiki from db2 (its
    jobs, its edits), the platform names db2 for discovery, the main server has none of
    it, and db2 survives a crash and restart."""
    db2 = farm.add_db_server("db2")
    w = farm.add_wiki("second.farm.test", db_server="db2")
    farm.push_null_jobs(w.domain, 20)
    farm.edit(w.domain, "Second page", "Links to [[Elsewhere]].")
    assert farm.ready_jobs(w.domain, "null") == 20
    assert farm.sql("SELECT COUNT(*) FROM %s WHERE job_cmd = 'null'" % w.job_table,
                    server="db2")[0][0] == 20
    assert not farm.sql("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                        (w.dbname,))
    assert farm.sql("SELECT server FROM farm_wiki_servers WHERE wiki_id = %s", (w.wiki_id,),
                    db="apidb") == ((db2.address,),)

    status, body = post_runjobs(farm, w.domain, w.secret, maxjobs=100)
    assert status == 200, body[:500]
    assert json.loads(body)["reached"] == "none-ready"
    assert farm.total_jobs(w.domain) == 0
    assert farm.links_to(w.domain, "Elsewhere") == ["Second_page"]

    farm.kill_db_server("db2")
    farm.restart_db_server("db2")
    farm.push_null_jobs(w.domain, 3)
    assert farm.ready_jobs(w.domain) == 3
    assert farmlib.Farm.load(farm.dir).db_servers["db2"] == db2


def test_wrong_or_stale_signature_is_400(farm):
    w = farm.add_wiki("wrongsecret.farm.test", mw_secret="0" * 64)
    farm.push_null_jobs(w.domain, 3)
    status, _ = post_runjobs(farm, w.domain, w.secret)  # platform secret != MediaWiki's
    assert status == 400
    status, _ = post_runjobs(farm, W1, farm.wiki(W1).secret, sigexpiry=int(time.time()) - 5)
    assert status == 400
    assert farm.ready_jobs(w.domain) == 3
    status, body = post_runjobs(farm, w.domain, w.mw_secret)  # MediaWiki's own secret works
    assert status == 200 and json.loads(body)["reached"] == "none-ready"
    assert farm.ready_jobs(w.domain) == 0


def test_read_only_wiki_is_423(farm):
    farm.push_null_jobs(W2, 2)
    farm.set_read_only(W2, "smoke test")
    try:
        status, _ = post_runjobs(farm, W2, farm.wiki(W2).secret)
        assert status == 423
        assert farm.ready_jobs(W2) == 2
    finally:
        farm.set_read_only(W2, "")
    farm.run_jobs_php(W2)
    assert farm.ready_jobs(W2) == 0
