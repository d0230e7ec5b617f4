"""Detection within a database budget (issue 13 items 1-2), on a real farm: ~50 wikis,
all but one only a job table and platform rows (the scan reads nothing else), and one
real MediaWiki wiki in the middle of the sweep's order. With a tiny budget the sweep is
paced, yet a job queued on the cold wiki is still found and run; /metrics exports the
budget's gauges; a wiki with jobs joins the hot set. Sweeps over idle wikis write no
coordination rows."""

import datetime
import json
import secrets
import subprocess
import time

import pytest

import farm as farm_mod
from farm import temporary_farm
from sidecar import BINARY, farm_ini, wait_until

COLD = "m-cold.farm.test"
FILLERS = ["a%02d.farm.test" % i for i in range(25)] + ["z%02d.farm.test" % i for i in range(24)]
GAUGES = ("jobdrainer_scan_sweep_period_seconds", "jobdrainer_scan_db_budget_ratio",
          "jobdrainer_scan_db_budget_used_ratio", "jobdrainer_scan_hot_wikis",
          "jobdrainer_scan_duration_seconds")


def add_table_only_wiki(f, domain):
    """A wiki as discovery and the scan see it: platform rows and a job table."""
    h = secrets.token_hex(5)
    db, pre = "mwdb_t%s" % h, "mwt_t%s" % h
    f.sql("CREATE DATABASE `%s` DEFAULT CHARACTER SET binary" % db)
    f.sql("CREATE TABLE `%s`.`%s_job` LIKE `%s`.`%s_job`"
          % (db, pre, farm_mod.TEMPLATE_DB, farm_mod.TEMPLATE_PREFIX))
    f.sql("INSERT INTO wikis (domain, sitename, created_at, updated_at) VALUES"
          " (%s, 't', NOW(), NOW())", (domain,), db="apidb")
    wid = f.sql("SELECT id FROM wikis WHERE domain = %s", (domain,), db="apidb")[0][0]
    f.sql("INSERT INTO wiki_dbs (name, prefix, user, password, version, wiki_id) VALUES"
          " (%s, %s, 'u', 'p', %s, %s)", (db, pre, farm_mod.DEFAULT_VERSION, wid), db="apidb")
    f.sql("INSERT INTO wiki_settings (name, value, wiki_id) VALUES ('wgSecretKey', %s, %s)",
          (secrets.token_hex(32), wid), db="apidb")


@pytest.fixture(scope="module")
def budget_farm():
    with temporary_farm("jdbudget-") as f:
        f.add_wiki(COLD)
        for d in FILLERS:
            add_table_only_wiki(f, d)
        yield f


def test_cold_job_found_and_run_under_a_tiny_budget(budget_farm, sidecars):
    farm = budget_farm
    pod = sidecars("pod-budget", farm_ini(
        farm, sidecar={"log_level": "debug"},
        discovery={"interval": 3600},
        # 1% of a core, 5 wikis per statement: ten statements per sweep, paced.
        scan={"db_budget_percent": 1, "wikis_per_query": 5, "interval": 1,
              "full_interval": 5}))
    # A first sweep of every wiki, and the gauges that describe it.
    wait_until(lambda: pod.metrics().get("jobdrainer_scans_total", 0) >= 1, timeout=180,
               what="a complete sweep")
    # The detection gauges come from the detectors' reports, collected every 5 s.
    m = wait_until(lambda: (lambda m: m if m.get("jobdrainer_scan_sweep_period_seconds", 0) > 0
                            else None)(pod.metrics()), timeout=30, what="the sweep's gauges")
    for g in GAUGES:
        assert g in m, (g, sorted(m))
    assert m["jobdrainer_scan_db_budget_ratio"] == pytest.approx(0.01)
    assert m["jobdrainer_scan_sweep_period_seconds"] > 0
    assert 0 <= m["jobdrainer_scan_db_budget_used_ratio"] <= 1
    assert m["jobdrainer_wikis"] == 1 + len(FILLERS)
    sweeps = [l for l in pod.lines() if l.get("msg") == "scan"]
    assert sweeps and int(sweeps[0]["wikis"]) == 1 + len(FILLERS), sweeps[:1]
    assert pod.batches() == []

    # A job on the cold wiki: found by the sweep within the budget, and run.
    farm.push_null_jobs(COLD, 3)
    wait_until(lambda: not farm.job_counts(COLD), timeout=240,
               what="the cold wiki's jobs run")
    # The batch's line follows MediaWiki's answer: the table can be empty a moment
    # before it is logged.
    wait_until(lambda: any(b.get("wiki") == COLD and b.get("msg") == "batch"
                           for b in pod.batches()), timeout=30, what="the cold wiki's batch")
    # It had jobs: it joined the hot set (re-read every [scan] interval).
    wait_until(lambda: pod.metrics().get("jobdrainer_scan_hot_wikis", 0) >= 1, timeout=30,
               what="the wiki in the hot set")
    # Sweeps go on: the rotation wraps around.
    done = pod.metrics()["jobdrainer_scans_total"]
    wait_until(lambda: pod.metrics()["jobdrainer_scans_total"] > done, timeout=180,
               what="another sweep")
    assert not [l for l in pod.lines() if l.get("level") in ("error", "ERROR")], \
        [l for l in pod.lines() if l.get("level") in ("error", "ERROR")][:3]
    # Stopped, not killed at teardown: it hands the scanner lease back, so the next
    # test's pod sweeps at once instead of after the lease's 60 s TTL.
    assert pod.stop() == 0


def status_json(pod, *args):
    r = subprocess.run([BINARY, "--config", pod.ini, "status", "--json"] + list(args),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_unchanged_wikis_cost_no_coordination_writes(budget_farm, sidecars):
    """Coordination writes stay O(changes) (issue 13 item 6): sweeps over idle wikis write
    no jd_wiki row, yet status reports the figures as fresh as the last sweep; a wiki that
    gets a job is written and drained; a wiki gone from discovery is forgotten."""
    farm = budget_farm
    pod = sidecars("pod-changes", farm_ini(
        farm, discovery={"interval": 1},
        scan={"db_budget_percent": 100, "interval": 1, "full_interval": 2}))
    rows = "SELECT domain, seen_at FROM jobdrainer.jd_wiki"

    def scans():
        return pod.metrics().get("jobdrainer_scans_total", 0)

    def written():
        return pod.metrics().get('jobdrainer_scan_rows_total{row="written"}', 0)

    wait_until(lambda: scans() >= 3, timeout=120, what="three sweeps")
    before, written_before, scans_before = dict(farm.sql(rows)), written(), scans()
    assert set(FILLERS) | {COLD} <= set(before), sorted(before)
    # A full sweep or more later, and long enough that the rows' own seen_at is old.
    time.sleep(12)
    wait_until(lambda: scans() >= scans_before + 3, timeout=120, what="three more sweeps")
    after = dict(farm.sql(rows))
    m = pod.metrics()
    print("rows written / left unchanged:", m['jobdrainer_scan_rows_total{row="written"}'],
          m['jobdrainer_scan_rows_total{row="unchanged"}'])
    assert after == before  # no row rewritten: every wiki is idle
    assert written() == written_before
    assert m['jobdrainer_scan_rows_total{row="unchanged"}'] >= 3 * len(before)
    # The figures are as fresh as the last sweep, not as the rows' last write.
    summary = status_json(pod)
    assert 0 <= summary["scan_age_s"] <= 8, summary
    one = status_json(pod, "--wiki", FILLERS[0])
    assert 0 <= one["scan_age_s"] <= 8, one

    # A job on one wiki: its row changes (and its jobs run); the others' rows do not.
    farm.push_null_jobs(COLD, 2)
    wait_until(lambda: not farm.job_counts(COLD), timeout=120, what="the new jobs run")
    changed = dict(farm.sql(rows))
    assert changed[COLD] > before[COLD]
    assert {d: t for d, t in changed.items() if d != COLD} == \
        {d: t for d, t in before.items() if d != COLD}

    # A wiki leaves discovery: its row goes (and comes back when the wiki does).
    gone = FILLERS[-1]
    farm.sql("UPDATE wikis SET deleted_at = NOW() WHERE domain = %s", (gone,), db="apidb")
    try:
        wait_until(lambda: gone not in dict(farm.sql(rows)), timeout=60,
                   what="the gone wiki's row forgotten")
    finally:
        farm.sql("UPDATE wikis SET deleted_at = NULL WHERE domain = %s", (gone,), db="apidb")
    wait_until(lambda: gone in dict(farm.sql(rows)), timeout=60,
               what="the returning wiki's row written again")
    assert not [l for l in pod.lines() if l.get("level") in ("error", "ERROR")], \
        [l for l in pod.lines() if l.get("level") in ("error", "ERROR")][:3]
    assert pod.stop() == 0  # the scanner lease handed back, as above


def sweep_shares(pod):
    """The share of a database core the sweeps used, one figure per complete sweep after
    the first: its statements' database time over the time since the previous sweep's
    end (both from the "scan" log lines)."""
    sweeps = [l for l in pod.lines() if l.get("msg") == "scan"]
    ends = [datetime.datetime.fromisoformat(l["ts"].replace("Z", "+00:00")) for l in sweeps]
    return [int(sweeps[i]["db_ms"]) / 1000 / max((ends[i] - ends[i - 1]).total_seconds(), 0.001)
            for i in range(1, len(sweeps))]


def test_a_sweep_too_long_for_the_budget_gets_more_within_max_sweep(budget_farm, sidecars):
    """[scan] max_sweep_seconds beats the budget: with 400 more wikis, at 1% of a core
    and one wiki per statement, a sweep here takes a few seconds; with
    max_sweep_seconds = 1 the scanner raises its share to fit, logged with the figures
    it decided on. The same farm with max_sweep_seconds = 0 keeps the budget. Last in
    the module: it adds wikis.

    What is checked is the decision and the pace's ceilings, not how much of a core the
    raised sweeps happened to use: that depends on how fast this machine's database
    answers (the raise is what the sweep needs, so a faster database rightly gets a
    smaller one: 1.5 % measured where this test once asked for more than 2 %).
    bench_scan_budget.py measures the shares."""
    # 400: the raise is due once a sweep costs more than 5 ms (1 s at 1 %, half of it
    # kept for the hot set). Judging by the sweeps' pace at 1 %, a sweep cost 100-250 ms
    # here with 400 more (past the server's table definition cache of 400, likely why)
    # and about 10 ms with 100 more: too near 5 ms for a faster machine. The price: a
    # minute or two of sweeps at 1 %.
    for i in range(400):
        add_table_only_wiki(budget_farm, "b%03d.farm.test" % i)
    wikis = 1 + len(FILLERS) + 400
    scan = {"db_budget_percent": 1, "wikis_per_query": 1, "interval": 1,
            "full_interval": 3600, "queries_per_second": 0}

    kept = sidecars("pod-kept", farm_ini(
        budget_farm, sidecar={"log_level": "debug"}, discovery={"interval": 3600},
        scan=dict(scan, max_sweep_seconds=0)))
    wait_until(lambda: len(sweep_shares(kept)) >= 5, timeout=240, what="six sweeps at 1%")
    kept_shares = sweep_shares(kept)
    kept.stop()
    assert not [l for l in kept.lines() if l.get("msg", "").startswith("database budget raised")]

    raised = sidecars("pod-raised", farm_ini(
        budget_farm, sidecar={"log_level": "debug"}, discovery={"interval": 3600},
        scan=dict(scan, max_sweep_seconds=1)))
    line = raised.wait_for(
        lambda l: l.get("msg") == "database budget raised to keep the sweep short",
        timeout=120, what="the budget raised")
    assert int(line["budget_percent"]) == 1, line
    assert int(line["max_sweep_s"]) == 1 and int(line["wikis"]) == wikis, line
    assert "max_sweep_seconds" in line["next"], line
    # The raise is the share that fits the expected sweep into max_sweep_seconds: its
    # database time over max_sweep_s, plus the hot set's half of the setting
    # (pace_sweep_budget), at most a quarter of a core; logged rounded up to a whole
    # percent, from the estimate in microseconds (sweep_db_ms is rounded down).
    asked = int(line["sweep_budget_percent"])
    needed = int(line["sweep_db_ms"]) / 10.0 / int(line["max_sweep_s"]) + 1 * 0.5
    assert asked > 1, line
    assert min(needed, 25) - 0.001 <= asked <= min(needed + 1.1, 25), (needed, line)
    wait_until(lambda: len(sweep_shares(raised)) >= 5, timeout=120, what="six raised sweeps")
    raised_shares = sweep_shares(raised)
    print("shares of a core, kept:", kept_shares, "raised (asked %d%%):" % asked,
          raised_shares)
    # The first sweeps of each run on the starting burst; the later ones show the pace.
    # Ceilings only, which a slow or busy machine cannot break: the pace holds the kept
    # run within its 1 %, and a raise within a quarter of a core (later estimates may
    # move the raise within that cap, unlogged), each with room for a tick's overshoot.
    # How far below them a sweep stays is the machine's speed, not a decision.
    kept_later, raised_later = sorted(kept_shares[2:]), sorted(raised_shares[2:])
    assert kept_later[len(kept_later) // 2] <= 0.015, kept_shares
    assert raised_later[len(raised_later) // 2] <= 0.25 * 1.2, (asked, raised_shares)
    # The gauge keeps the setting; the log line above carries the raise.
    assert raised.metrics()["jobdrainer_scan_db_budget_ratio"] == pytest.approx(0.01)
