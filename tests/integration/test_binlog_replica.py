"""The binary log feed pointed at a replica (issue 21): a second mariadbd on loopback
replicates the farm's job tables from the primary (CHANGE MASTER TO ... on it). Without
log_slave_updates its binary log holds none of the primary's inserts: the feed says it
is blind (log line, jobdrainer_binlog_following 0) and the sweep still finds the jobs.
With log_slave_updates it follows, and inserts on the primary wake their wikis through
the replica's feed (the Wikibase Cloud layout: follow the secondary)."""

import pytest

from farm import temporary_farm
from sidecar import wait_until
from test_binlog import (FOLLOWING, STOPPED, WIKIS, assert_woken_and_run, create_feed_user,
                         ini, msgs)

BLIND = "binary log feed blind"
REPL_USER, REPL_PASSWORD = "jdrepl", "replpass"


def replica_args(farm, log_slave_updates):
    """The replica's own mariadbd arguments, after the farm's (the last one wins): its
    server id, and only the wikis' job tables replicated (it holds nothing else)."""
    extra = ["--server-id=2", "--replicate-wild-do-table=mwdb%.%job"]
    if log_slave_updates:
        extra.append("--log-slave-updates")
    base = type(farm)._mysqld_args
    farm._mysqld_args = lambda: base(farm) + extra


def restart_replica(farm, log_slave_updates):
    replica_args(farm, log_slave_updates)
    farm._close_server_conns("replica")
    farm._stop_service("mariadbd-replica")
    farm.restart_db_server("replica")
    wait_until(lambda: replica_running(farm), timeout=30, what="replication running")


def replica_running(farm):
    rows = farm.sql("SHOW GLOBAL STATUS LIKE 'Slaves_running'", server="replica")
    return rows and rows[0][1] not in ("0", b"0")


@pytest.fixture(scope="module")
def rfarm():
    with temporary_farm("jdreplica-", wikis=3, binlog_format="ROW") as f:
        create_feed_user(f)
        f.sql("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'" % (REPL_USER, REPL_PASSWORD))
        f.sql("GRANT REPLICATION SLAVE ON *.* TO '%s'@'127.0.0.1'" % REPL_USER)
        replica_args(f, log_slave_updates=False)
        f.add_db_server("replica")
        # The feed's user, and the wikis' job tables (empty) to replicate into.
        create_feed_user(f, server="replica")
        for domain in WIKIS:
            w = f.wiki(domain)
            create = f.sql("SHOW CREATE TABLE %s" % w.job_table)[0][1]
            f.sql("CREATE DATABASE IF NOT EXISTS `%s`" % w.dbname, server="replica")
            f.sql(create, db=w.dbname, server="replica")
        fname, pos = f.sql("SHOW MASTER STATUS")[0][:2]
        f.sql("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', "
              "MASTER_PASSWORD='%s', MASTER_LOG_FILE='%s', MASTER_LOG_POS=%d"
              % (f.mysql_port, REPL_USER, REPL_PASSWORD, fname, pos), server="replica")
        f.sql("START SLAVE", server="replica")
        wait_until(lambda: replica_running(f), timeout=30, what="replication running")
        yield f


def replica_ini(farm, **more):
    """The sidecar scans the primary; its feed follows the replica."""
    port = farm.db_server("replica").port
    binlog = {"host": "127.0.0.1", "port": port}
    binlog.update(more.pop("binlog", {}))
    return ini(farm, binlog=binlog, **more)


def replicated(farm, domain):
    w = farm.wiki(domain)
    return farm.sql("SELECT COUNT(*) FROM %s" % w.job_table, server="replica")[0][0]


def test_a_replica_without_log_slave_updates_is_reported_blind(rfarm, sidecars):
    farm = rfarm
    pod = sidecars("pod-blind", replica_ini(farm, scan_interval=2))
    line = pod.wait_for(lambda l: l.get("msg") == BLIND, timeout=30, what="the blind line")
    assert "replica" in line["why"] and "log_slave_updates" in line["why"], line
    assert "full speed" in line["next"], line
    assert pod.metrics()["jobdrainer_binlog_following"] == 0
    # The jobs are found all the same, by the sweep; and they did reach the replica
    # (this test tested a working replica).
    before = replicated(farm, "wiki2.farm.test")
    farm.push_null_jobs("wiki2.farm.test", 2)
    wait_until(lambda: replicated(farm, "wiki2.farm.test") != before, timeout=30,
               what="the jobs replicated")
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == "wiki2.farm.test"
                 and l.get("jobs_ok", 0) >= 1, timeout=60, what="a batch found by scanning")
    # Checked again every retry_interval (1 s), still one line, never following.
    pod.wait_for(lambda l: l.get("msg") == "scan", timeout=30, what="a sweep")
    assert len(msgs(pod, BLIND)) == 1
    assert msgs(pod, FOLLOWING) == [] and msgs(pod, STOPPED) == []
    assert pod.metrics()["jobdrainer_binlog_following"] == 0
    assert pod.stop() == 0


def test_a_replica_with_log_slave_updates_wakes_the_primarys_inserts(rfarm, sidecars):
    farm = rfarm
    restart_replica(farm, log_slave_updates=True)
    pod = sidecars("pod-lsu", replica_ini(farm))
    pod.wait_for(lambda l: l.get("msg") == FOLLOWING, timeout=30, what="the feed")
    pod.wait_for(lambda l: l.get("msg") == "scan", timeout=30, what="the first scan")
    assert msgs(pod, BLIND) == []
    assert pod.metrics()["jobdrainer_binlog_following"] == 1
    # Pushed on the primary; the wake comes from the replica's log.
    for domain in ("wiki1.farm.test", "wiki3.farm.test"):
        assert_woken_and_run(pod, farm, domain, lambda: farm.push_null_jobs(domain, 1))
    assert pod.stop() == 0
