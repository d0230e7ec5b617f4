"""Detection per database server, visible to operators (issue 21): the coordination
table jd_server, `jobdrainer status` (text and --json) and the per-server /metrics
series.

The read path is tested on rows written by hand into the table the real sidecar's
schema step created: each server's state, why it is down or its feed not following, and
a row the scanner lease holder stopped rewriting flagged as stale. The write path (the
scanner reporting its servers every COORD_SERVER_REPORT_MS) is tested end to end by
test_a_running_scanner_reports_each_server, which fails until the scanner calls
coord_write_server_reports and metrics_set_servers (see its docstring)."""

import json
import subprocess
import time

from farm import free_port
from sidecar import BINARY, farm_ini, wait_until
# The discovery query with the server column.
from test_db_servers import QUERY

# A scope of its own (the [discovery] version filter): the running sidecars' scanner
# writes its reports under scope "" and never touches these rows.
SCOPE = "detection-test"
COORD = "jobdrainer"
# COORD_SERVER_STALE_MS (coord.h): a row older than this is flagged as stale.
STALE_S = 15
UP = "127.0.0.1:3306"
DOWN = "127.0.0.1:3399"
STALE = "db3.example:3306"
DOWN_WHY = "2002: Can't connect to server on '127.0.0.1' (115)"
BLIND_WHY = "binlog_format is STATEMENT on a replica without log_slave_updates"


def cli(ini_path, *args):
    return subprocess.run([BINARY, "--config", str(ini_path)] + list(args),
                          capture_output=True, text=True, timeout=120)


def table_exists(farm, name):
    return farm.sql("SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
                    " AND table_name = %s", (COORD, name))


def insert_row(farm, scope, server, age_s=0, down=False, down_why=None, sweep_ms=0,
               budget_used=0.0, feed=None, feed_why=None, wikis=3, hot=1, unreadable=0):
    farm.sql("INSERT INTO `%s`.jd_server (scope, server, reported_by, wikis, down, down_why,"
             " sweep_ms, budget_used, hot, unreadable, feed, feed_why, updated_at)"
             " VALUES (%%s, %%s, 'pod-a', %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s,"
             " NOW(6) - INTERVAL %%s SECOND)" % COORD,
             (scope, server, wikis, int(down), down_why, sweep_ms, budget_used, hot,
              unreadable, feed, feed_why, age_s))


def test_status_shows_each_servers_report_and_flags_stale_ones(farm, sidecars, tmp_path):
    # The table as the real sidecar's schema step creates it (coord_ensure_schema).
    pod = sidecars("schema", farm_ini(farm))
    wait_until(lambda: table_exists(farm, "jd_server"), timeout=30, what="jd_server created")
    assert pod.stop() == 0
    farm.sql("DELETE FROM `%s`.jd_server WHERE scope = %%s" % COORD, (SCOPE,))
    written = time.monotonic()
    insert_row(farm, SCOPE, UP, sweep_ms=4200, budget_used=0.031, feed=1)
    insert_row(farm, SCOPE, DOWN, down=True, down_why=DOWN_WHY, wikis=1, hot=0)
    # Not rewritten for two minutes: its reporter stopped.
    insert_row(farm, SCOPE, STALE, age_s=120, sweep_ms=95000, budget_used=0.05, feed=2,
               feed_why=BLIND_WHY, unreadable=2)
    # Another scope's server is not this status's business.
    insert_row(farm, SCOPE + "-other", "other.example:3306")
    ini = tmp_path / "status.ini"
    ini.write_text(farm_ini(farm, sidecar={"log_format": "text"},
                            discovery={"version": SCOPE}))

    r = cli(ini, "status")
    # The fresh rows are fresh unless this machine stalled for STALE_S (then only the
    # stale row's verdict is checked: the others' would be right to say stale too).
    fresh = time.monotonic() - written < STALE_S
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("detection"))
    assert lines[start + 1].split() == ["SERVER", "WIKIS", "HOT", "UNREADABLE", "STATE",
                                        "SWEEP", "BUDGET", "FEED", "REPORTED"]
    rows = {l.split()[0]: l.split() for l in lines[start + 2:start + 5]}
    assert set(rows) == {UP, DOWN, STALE}
    assert rows[UP][1:8] == ["3", "1", "0", "up", "4.2s", "3.1%", "following"]
    assert rows[DOWN][1:8] == ["1", "0", "0", "down", "-", "0.0%", "-"]
    assert rows[STALE][1:8] == ["3", "1", "2", "up", "95s", "5.0%", "blind"]
    assert rows[STALE][8].startswith("2m") and rows[UP][9] == "ago"
    notes = lines[start + 5:]
    assert "  %s: down: %s" % (DOWN, DOWN_WHY) in notes
    assert "  %s: feed blind: %s" % (STALE, BLIND_WHY) in notes
    stale = [l for l in notes if ": stale: " in l]
    assert len(stale) == 1 or not fresh
    assert stale[-1].startswith("  %s: stale: no report for 2m" % STALE)
    assert "pod-a" in stale[-1]
    assert "other.example" not in r.stdout

    r = cli(ini, "status", "--json")
    fresh = time.monotonic() - written < STALE_S
    assert r.returncode == 0, r.stderr
    servers = {s["server"]: s for s in json.loads(r.stdout)["detection"]}
    assert set(servers) == {UP, DOWN, STALE}
    up, down, old = servers[UP], servers[DOWN], servers[STALE]
    assert up["up"] is True and up["down_why"] is None and up["feed"] == "following"
    assert up["feed_why"] is None and up["sweep_period_s"] == 4.2
    assert up["db_budget_used_ratio"] == 0.031 and up["wikis"] == 3 and up["hot_wikis"] == 1
    assert up["stale"] is False or not fresh
    assert up["report_age_s"] >= 0 and old["report_age_s"] > up["report_age_s"]
    assert up["reported_by"] == "pod-a"
    assert down["up"] is False and down["down_why"] == DOWN_WHY
    assert down["feed"] is None and down["sweep_period_s"] is None
    assert down["stale"] is False or not fresh
    assert old["feed"] == "blind" and old["feed_why"] == BLIND_WHY
    assert old["stale"] is True and old["report_age_s"] >= 120
    assert old["unreadable_wikis"] == 2

    # A coordination database whose schema predates jd_server (only sidecars of an
    # earlier release ran against it: a rolling upgrade): status works, says nothing
    # was reported. The next sidecar of this release creates the table again.
    farm.sql("DROP TABLE `%s`.jd_server" % COORD)
    r = cli(ini, "status")
    assert r.returncode == 0, r.stderr
    assert "detection: no database server reported" in r.stdout
    r = cli(ini, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["detection"] == []
    pod = sidecars("schema-again", farm_ini(farm))
    wait_until(lambda: table_exists(farm, "jd_server"), timeout=30, what="jd_server again")
    assert pod.stop() == 0


def test_a_running_scanner_reports_each_server(farm, sidecars, tmp_path):
    """PENDING THE DETECTOR'S INTEGRATION: this test fails until the scanner lease
    holder calls metrics_set_servers() and coord_write_server_reports() with every
    server's struct server_report every COORD_SERVER_REPORT_MS (sidecar/scanner.c, issue
    21's detector work). Then it checks the write path end to end: a scanner with two
    database servers, the farm's own (up) and an allowed one at a closed port (down),
    reports both in /metrics (per-server series) and in jd_server, as `status` shows."""
    closed = "127.0.0.1:%d" % free_port()
    up = "127.0.0.1:%d" % farm.mysql_port
    w = farm.add_wiki("detection-down.farm.test", create_db=False)
    farm.sql("INSERT INTO farm_wiki_servers (wiki_id, server) VALUES (%s, %s)",
             (w.wiki_id, closed), db="apidb")
    try:
        # The second server's login said in [scan_db] itself (never [platform_db]'s).
        pod = sidecars("reporter", farm_ini(farm, discovery={"query": QUERY, "interval": 2},
                                            scan_db={"user": "jobdrainer", "password": "jdpass"},
                                            scan={"interval": 1, "allowed_servers": closed}))

        def both_reported():
            m = pod.metrics()
            return (m.get('jobdrainer_scan_server_up{server="%s"}' % up) == 1
                    and m.get('jobdrainer_scan_server_up{server="%s"}' % closed) == 0
                    and m)
        m = wait_until(both_reported, timeout=60, what="both servers in /metrics")
        assert m['jobdrainer_scan_server_wikis{server="%s"}' % closed] == 1
        assert m['jobdrainer_scan_server_wikis{server="%s"}' % up] >= 3
        # No [binlog]: no feed, so no feed state series.
        assert not [k for k in m if k.startswith("jobdrainer_binlog_feed_state{")]

        rows = wait_until(lambda: farm.sql(
            "SELECT server, down, down_why, reported_by FROM `%s`.jd_server"
            " WHERE scope = '' ORDER BY server" % COORD), timeout=30, what="jd_server rows")
        by_server = {r[0]: r for r in rows}
        assert set(by_server) == {up, closed}
        assert by_server[up][1] == 0 and by_server[closed][1] == 1
        assert by_server[closed][2] and by_server[closed][3].startswith("reporter")

        ini = tmp_path / "status.ini"
        ini.write_text(farm_ini(farm, sidecar={"log_format": "text"}))
        r = cli(ini, "status", "--json")
        assert r.returncode == 0, r.stderr
        servers = {s["server"]: s for s in json.loads(r.stdout)["detection"]}
        assert servers[closed]["up"] is False and servers[closed]["down_why"]
        assert servers[up]["up"] is True and servers[up]["stale"] is False
        assert pod.stop() == 0
    finally:
        farm.sql("DELETE FROM farm_wiki_servers WHERE wiki_id = %s", (w.wiki_id,),
                 db="apidb")
        farm.sql("UPDATE wikis SET deleted_at = NOW() WHERE id = %s", (w.wiki_id,),
                 db="apidb")
