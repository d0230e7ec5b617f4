"""Lanes: a flooded wiki drains on the fleet's idle workers at the shipped defaults, hands
them back when another wiki waits, and takes fewer lanes while its jobs collide on locks
(sidecar/lanes.h). Real MariaDB, real Apache + MediaWiki, two sidecars of two workers.

The tests check decisions and outcomes (which lanes ran, when one was handed back, what
was lost), not speed: the bot below queues jobs faster than one lane can run them on
any machine, because each job sleeps 20 ms and one lane runs its jobs one after another
(at most 50 a second), so keeping up needs more than one lane whatever the hardware."""

import calendar
import hashlib
import json
import signal
import subprocess
import time

import pymysql
import pytest

from sidecar import BINARY, farm_ini, wait_until

BOT_RATE = 80          # jobs a second: more than one lane's 50 at most
BOT_SECONDS = 60       # long enough for lanes to join and several batches to overlap
JOB_US = 20000         # each bot job waits 20 ms, like a search-index write
SMALL_EVERY = 3.0      # a small wiki gets a job this often
PROMISE_S = 180        # the 3-minute promise


@pytest.fixture(scope="module")
def farm12(farm):
    for i in range(4, 13):
        farm.add_wiki("wiki%d.farm.test" % i)
    return farm


def shipped(farm, **more):
    """The farm's INI with the shipped lanes and batch keys (no max_workers_per_wiki,
    maxjobs or maxjobs_alone of the tests' own)."""
    return farm_ini(farm, mediawiki={"maxjobs": None}, **more)


def log_time(line):
    """A log line's ts as unix time (the line is written when the batch ends)."""
    ts = line["ts"]
    whole, frac = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + frac)


def batches_of(pods, wiki):
    """Every batch line of `wiki` from every pod: (start, end, lane, maxjobs, pod)."""
    out = []
    for p in pods:
        for b in p.batches(wiki):
            end = log_time(b)
            out.append((end - int(b["ms"]) / 1000.0, end, int(b.get("lane", 1)), int(b["maxjobs"]),
                        p.name))
    return sorted(out)


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def flood(farm, bot_wiki, small, rate=BOT_RATE, seconds=BOT_SECONDS):
    """A bot queues `rate` jobs a second on bot_wiki for `seconds` (in rounds, 4 a
    second), while each small wiki gets a job every SMALL_EVERY seconds. One thread:
    the farm's database connection is not shared across threads. Returns the bot's
    job count."""
    t0 = time.monotonic()
    queued = n_small = 0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic() - t0
        due = int(now * rate) + rate // 4
        if due > queued:
            farm.insert_probe_jobs(bot_wiki, due - queued, tag="bot", usleep_us=JOB_US,
                                   seq0=queued)
            queued = due
        while n_small < now * len(small) / SMALL_EVERY:
            farm.insert_probe_jobs(small[n_small % len(small)], 1, tag="small")
            n_small += 1
        time.sleep(0.25)
    return queued


def test_a_flooded_wiki_takes_idle_workers_and_keeps_the_promise(farm12, sidecars):
    farm = farm12
    bot_wiki = "wiki4.farm.test"
    small = ["wiki%d.farm.test" % i for i in range(5, 10)]
    pods = [sidecars("lanes%d" % i, shipped(farm)) for i in (1, 2)]
    t0 = time.time()
    queued = flood(farm, bot_wiki, small)
    t_stop = time.time()
    wait_until(lambda: farm.ready_jobs(bot_wiki) == 0, timeout=PROMISE_S,
               what="the flood drained after the bot stopped")
    drained_after = time.time() - t_stop
    wait_until(lambda: all(farm.ready_jobs(d) == 0 for d in small), timeout=60,
               what="small wikis drained")
    runs = [r for r in farm.probe_runs() if r["pushed"] >= t0 - 1]
    bot_waits = [r["ran"] - r["pushed"] for r in runs if r["tag"] == "bot"]
    small_waits = [r["ran"] - r["pushed"] for r in runs if r["tag"] == "small"]
    assert len(bot_waits) == queued, (len(bot_waits), queued)
    # The promise holds for every user of the busiest wiki.
    assert percentile(bot_waits, 0.99) < PROMISE_S, percentile(bot_waits, 0.99)
    # It took more than one lane: batches of the bot wiki ran under lanes 2 and up, and
    # some overlapped (one lane alone cannot keep up, see the module's comment).
    bot_batches = batches_of(pods, bot_wiki)
    assert {b[2] for b in bot_batches} - {1}, bot_batches[:20]
    overlapping = sum(1 for a, b in zip(bot_batches, bot_batches[1:]) if b[0] < a[1])
    assert overlapping >= 3, bot_batches[:20]
    # The flood is gone within a minute of the bot stopping.
    assert drained_after < 60, drained_after
    # Small wikis are not starved: their jobs still run within a scan and a batch.
    assert small_waits and max(small_waits) < 30, sorted(small_waits)[-5:]
    for p in pods:
        assert p.stop() == 0


def test_a_waiting_wiki_gets_a_worker_within_one_batch_of_the_extra_lanes(farm12, sidecars):
    """The bot wiki holds all four workers (one lane each); a second wiki's job appears:
    extra lanes hand their worker back after the batch in flight (they check before each
    next batch, on a view of the waiting wikis at most poll_interval_ms old)."""
    farm = farm12
    bot_wiki, late = "wiki10.farm.test", "wiki11.farm.test"
    pods = [sidecars("wait%d" % i, shipped(farm)) for i in (1, 2)]
    farm.insert_probe_jobs(bot_wiki, 4000, tag="flood", usleep_us=JOB_US)
    wait_until(lambda: len({b[2] for b in batches_of(pods, bot_wiki)}) >= 4, timeout=90,
               what="four lanes on the flooded wiki")
    farm.insert_probe_jobs(late, 1, tag="late")
    seen = wait_until(lambda: farm.sql("SELECT 1 FROM jobdrainer.jd_wiki WHERE domain = %s"
                                       " AND oldest_ready_at IS NOT NULL", (late,)),
                      timeout=30, interval=0.05, what="the late wiki's job seen")
    assert seen
    t_seen = time.time()
    first = wait_until(lambda: batches_of(pods, late), timeout=60,
                       what="a batch on the late wiki")[0]
    # How late a lane may start a batch it decided on before it saw the late wiki: its
    # view of the waiting wikis is up to poll_interval_ms (1 s) old, and between the
    # decision and the request come the pod's pacing and the lease renew (2 s of room
    # for a loaded machine; a bot batch lasts about 3.3 s, a third of maxtime).
    stale = 1.0 + 2.0
    extra_started = [b for b in batches_of(pods, bot_wiki)
                     if b[2] > 1 and t_seen + stale < b[0] < first[0]]
    assert extra_started == [], (t_seen, first, extra_started)
    # And the batches sized for a lone wiki came back to maxjobs for the next one.
    after = [b for b in batches_of(pods, bot_wiki) if b[0] > first[0] + stale]
    if after:
        assert after[0][3] == 100, after[:3]
    farm.sql("DELETE FROM %s WHERE job_cmd = 'farmProbe'" % farm.wiki(bot_wiki).job_table)
    for p in pods:
        assert p.stop() == 0


def test_a_lone_wiki_of_slow_jobs_gets_batches_larger_than_maxjobs(farm12, sidecars):
    farm = farm12
    wiki = "wiki12.farm.test"
    # 20 ms jobs: 100 take 2 s, longer than the old one-second growth threshold.
    farm.insert_probe_jobs(wiki, 1200, tag="slow", usleep_us=JOB_US)
    pod = sidecars("slow", shipped(farm, sidecar={"workers": 1}))
    wait_until(lambda: farm.ready_jobs(wiki) == 0, timeout=180, what="slow jobs drained")
    sizes = [b[3] for b in batches_of([pod], wiki)]
    assert sizes[0] == 100, sizes
    assert max(sizes) > 100, sizes
    assert pod.stop() == 0


def _lock_pages(farm, wiki, page_ids):
    """Holds RefreshLinksJob's per-page locks, as another runner of the same page would
    (LinksUpdate::acquirePageLock: '<db>:LinksUpdate:job:pageid:<id>', GET_LOCK)."""
    w = farm.wiki(wiki)
    # DatabaseDomain::getId (dbname-prefix, '-' and '?' escaped) and MySQLPlatform::
    # makeLockName (a name over 64 bytes is its sha1).
    domain_id = "-".join(p.replace("?", "??").replace("-", "?h")
                         for p in (w.dbname, w.prefix + "_"))
    conn = pymysql.connect(unix_socket=farm.socket, user="root", autocommit=True)
    with conn.cursor() as cur:
        for pid in page_ids:
            name = "%s:LinksUpdate:job:pageid:%d" % (domain_id, pid)
            if len(name) > 64:
                name = hashlib.sha1(name.encode()).hexdigest()
            cur.execute("SELECT GET_LOCK(%s, 5)", (name,))
            assert cur.fetchone()[0] == 1
    return conn


def test_lock_errors_take_lanes_away_and_lose_no_job(farm12, sidecars):
    """Real refreshLinks jobs from a template edit, one per page, colliding on page locks
    that another runner holds: the wiki's lanes are halved (logged with why), and once
    the locks are free every page's links are updated and no job is left abandoned."""
    farm = farm12
    wiki = "wiki13.farm.test"
    farm.add_wiki(wiki)
    # One page per refreshLinks job, and failed claims come back after 10 s, not an hour.
    farm.set_settings_override(
        "$wgUpdateRowsPerJob = 1;\n"
        "$wgJobTypeConf['default'] = [ 'class' => 'JobQueueDB', 'order' => 'random',"
        " 'claimTTL' => 10 ];\n")
    try:
        pod = sidecars("locks", shipped(farm, sidecar={"workers": 4}))
        links = farm.make_link_jobs(wiki, pages=12, template="LaneLinks")
        ids = [r[0] for r in farm.sql(
            "SELECT page_id FROM %s WHERE page_namespace = 0 AND page_title LIKE 'LaneLinks_page_%%'"
            % farm.wiki(wiki).table("page"))]
        locker = _lock_pages(farm, wiki, ids[:6])
        try:
            reduced = pod.wait_for(lambda l: l.get("msg") == "lanes reduced"
                                   and l.get("wiki") == wiki, timeout=120,
                                   what="lanes reduced after lock errors")
        finally:
            locker.close()
        assert reduced["why"] == "reduced after lock errors", reduced
        assert int(reduced["lanes"]) < int(reduced["lanes_before"]), reduced
        row = farm.sql("SELECT lanes_reduced, lanes_why FROM jobdrainer.jd_wiki"
                       " WHERE domain = %s", (wiki,))
        assert row[0][0] is not None and row[0][0] < 4 and row[0][1] == "locks", row
        # The failed claims come back after claimTTL when a runner next pops the type
        # and finds none ready: one more template edit queues refreshLinks jobs again,
        # whose batches end with such a pop.
        time.sleep(11)  # claimTTL (10 s) must pass before MediaWiki recycles a claim
        farm.edit(wiki, links["template"], "See [[%s]] (again)." % links["new_target"])
        try:
            wait_until(lambda: farm.total_jobs(wiki) == 0
                       and farm.links_to(wiki, links["new_target"]) == links["pages"],
                       timeout=120, interval=1,
                       what="every job run (none stuck claimed) and every page updated")
        except AssertionError:
            raise AssertionError("links to the new target: %s; job rows: %s" % (
                farm.links_to(wiki, links["new_target"]),
                farm.sql("SELECT job_id, job_cmd, job_title, job_attempts, job_token,"
                         " job_token_timestamp FROM %s" % farm.wiki(wiki).job_table)))
        assert pod.stop() == 0
    finally:
        farm.set_settings_override(None)


def run_cli(ini_path, *args, **kw):
    return subprocess.run([BINARY, "--config", str(ini_path)] + list(args),
                          capture_output=True, text=True, timeout=kw.get("timeout", 180))


def test_drain_with_lanes_and_status_shows_them(farm12, sidecars, tmp_path):
    """The operator's lever: `drain --wiki D --lanes 3` runs three lease slots at once;
    `status --wiki` says how many lanes the wiki has and why."""
    farm = farm12
    wiki = "wiki6.farm.test"
    ini = tmp_path / "cli.ini"
    ini.write_text(shipped(farm))
    farm.insert_probe_jobs(wiki, 600, tag="cli", usleep_us=JOB_US)
    r = run_cli(ini, "status", "--wiki", wiki)
    assert r.returncode == 0, r.stderr
    assert "lanes: 0 in use of 4 allowed (elastic, max_workers_per_wiki = 4)" in r.stdout, \
        r.stdout
    doc = json.loads(run_cli(ini, "status", "--wiki", wiki, "--json").stdout)
    assert doc["lanes"] == {"in_use": 0, "allowed": 4, "max": 4, "why": "elastic"}, doc
    t0 = time.time()
    r = run_cli(ini, "drain", "--wiki", wiki, "--lanes", "3")
    assert r.returncode == 0, (r.stdout, r.stderr)
    for lane in (1, 2, 3):
        assert "lane %d: %s: lease taken (slot %d" % (lane, wiki, lane - 1) in r.stdout, r.stdout
    assert "%s: 3 lanes, 600 jobs ok, 0 failed" % wiki in r.stdout, r.stdout
    assert farm.ready_jobs(wiki) == 0
    # The three lanes' batches overlapped at MediaWiki (Apache's log: start, duration).
    reqs = sorted((e["start"], e["start"] + e["duration_us"] / 1e6)
                  for e in farm.access_log_entries() if e["host"] == wiki and e["start"] >= t0)
    assert max(sum(1 for s, e in reqs if s <= t < e) for t, _ in reqs) >= 2, reqs[:10]
    # A reduction shows with its reason.
    farm.sql("UPDATE jobdrainer.jd_wiki SET lanes_reduced = 1, lanes_why = 'replica',"
             " lanes_changed_at = NOW(6) WHERE domain = %s", (wiki,))
    r = run_cli(ini, "status", "--wiki", wiki)
    assert "lanes: 0 in use of 1 allowed (reduced after replica lag, " in r.stdout, r.stdout
    r = run_cli(ini, "drain", "--wiki", wiki, "--lanes", "0")
    assert r.returncode == 2 and "--lanes '0'" in r.stderr, r.stderr
    r = run_cli(ini, "status", "--lanes", "2")
    assert r.returncode == 2 and "--lanes goes with the drain command" in r.stderr, r.stderr


def test_drain_command_stops_on_sigint_after_the_batches_in_flight(farm12, tmp_path):
    """SIGINT is taken the way the daemon takes SIGTERM: every lane ends after its batch
    in flight and releases its lease; nothing is left claimed."""
    farm = farm12
    wiki = "wiki7.farm.test"
    ini = tmp_path / "cli.ini"
    ini.write_text(shipped(farm))
    farm.insert_probe_jobs(wiki, 3000, tag="sigint", usleep_us=JOB_US)
    proc = subprocess.Popen([BINARY, "--config", str(ini), "drain", "--wiki", wiki,
                             "--lanes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_until(lambda: farm.ready_jobs(wiki) < 2900, timeout=60, what="the drain under way")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert out.count("(interrupted; lease released)") == 2, out
    assert farm.ready_jobs(wiki) > 0, "stopped before the end"
    held = farm.sql("SELECT COUNT(*) FROM jobdrainer.jd_lease WHERE name = %s"
                    " AND expires_at > NOW(6)", (wiki,))[0][0]
    assert held == 0
    claimed = farm.sql("SELECT COUNT(*) FROM %s WHERE job_token != ''"
                       % farm.wiki(wiki).job_table)[0][0]
    assert claimed == 0
    farm.sql("DELETE FROM %s" % farm.wiki(wiki).job_table)


def test_a_pod_at_info_logs_one_line_per_drain(farm12, sidecars):
    """At the shipped log_level (info) a busy pod says one line per drain of a wiki, not
    one per batch; every failure is still said (test_bad_input checks those)."""
    farm = farm12
    wiki = "wiki8.farm.test"
    farm.insert_probe_jobs(wiki, 1500, tag="quiet")
    pod = sidecars("quiet", farm_ini(farm, sidecar={"log_level": "info", "workers": 1},
                                     mediawiki={"maxjobs": 100, "maxjobs_alone": 100}))
    wait_until(lambda: farm.ready_jobs(wiki) == 0, timeout=120, what="drained")
    drains = pod.wait_for(lambda l: l.get("msg") == "drain" and l.get("wiki") == wiki,
                          timeout=30, what="the drain's line") and \
        [l for l in pod.lines() if l.get("msg") == "drain" and l.get("wiki") == wiki]
    assert sum(int(d["drain_jobs_ok"]) for d in drains) == 1500, drains
    assert sum(int(d["batches"]) for d in drains) >= 15, drains
    assert len(drains) < sum(int(d["batches"]) for d in drains), drains
    assert drains[-1]["last_outcome"] == "drained" and drains[-1]["lane"] == 1, drains
    assert pod.batches(wiki) == [], "per-batch lines at info"
    assert pod.stop() == 0


def test_a_row_no_pod_serves_does_not_keep_a_lone_wikis_batches_small(farm12, sidecars):
    """A jd_wiki row with a backlog that no pod serves (a wiki discovery dropped, rows of
    an earlier farm) is no wiki waiting for a worker: it must not hold a lone wiki's
    batches at maxjobs (the rule before counted it, and a drain stayed at 100 a batch)."""
    farm = farm12
    wiki = "wiki9.farm.test"
    farm.insert_probe_jobs(wiki, 3000, tag="ghost")
    pod = sidecars("ghost", shipped(farm, sidecar={"workers": 1}))
    wait_until(lambda: farm.sql("SELECT 1 FROM jobdrainer.jd_schema"), timeout=30,
               what="the coordination schema")

    def ghost_and_drained():
        # The scanner forgets rows discovery does not list: put it back each time.
        farm.sql("INSERT INTO jobdrainer.jd_wiki (scope, domain, oldest_ready_at,"
                 " ready_types, seen_at) VALUES ('', 'ghost.farm.test',"
                 " NOW(6) - INTERVAL 1 HOUR, 1, NOW(6)) ON DUPLICATE KEY UPDATE"
                 " oldest_ready_at = VALUES(oldest_ready_at), seen_at = NOW(6)")
        farm.sql("INSERT IGNORE INTO jobdrainer.jd_lease (scope, name, slot) VALUES"
                 " ('', 'ghost.farm.test', 0)")
        return farm.ready_jobs(wiki) == 0

    try:
        wait_until(ghost_and_drained, timeout=180, interval=0.1, what="drained")
        sizes = [b[3] for b in batches_of([pod], wiki)]
        # The rule before grew once (100, 200), then fell back to 100 for the rest.
        grown = [x for x in sizes[1:] if x > 100]
        assert len(grown) >= len(sizes[1:]) / 2, sizes
    finally:
        farm.sql("DELETE FROM jobdrainer.jd_wiki WHERE domain = 'ghost.farm.test'")
        farm.sql("DELETE FROM jobdrainer.jd_lease WHERE name = 'ghost.farm.test'")
    assert pod.stop() == 0
