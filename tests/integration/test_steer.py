"""Operators steer the running fleet: pause and resume (one wiki, every wiki, with --for),
against real MariaDB and real MediaWiki, with two sidecars standing in for two pods."""

import json
import shlex
import subprocess

from farm import MW_DIR, PHP_BIN, mw_at_least

from sidecar import BINARY, farm_ini, wait_until

W1, W2, W3 = "wiki1.farm.test", "wiki2.farm.test", "wiki3.farm.test"


def cli(pod, *args, env=None):
    """Runs an operator command next to `pod` (same INI), like kubectl exec would."""
    return subprocess.run([BINARY, "--config", pod.ini] + list(args), capture_output=True,
                          text=True, timeout=60, env=env)


def status_json(pod):
    r = cli(pod, "status", "--json", "--all")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_pause_one_wiki_across_two_pods_then_resume(farm, sidecars):
    ini = farm_ini(farm)
    a = sidecars("steer-a", ini, start=False)
    r = cli(a, "pause", "--wiki", W1, "--reason", "database migration")
    assert r.returncode == 0, r.stderr
    assert "paused " + W1 in r.stdout and "until resumed" in r.stdout
    assert "reason: database migration" in r.stdout

    farm.push_null_jobs(W1, 120)
    farm.push_null_jobs(W2, 120)
    a.start()
    b = sidecars("steer-b", ini)
    wait_until(lambda: farm.ready_jobs(W2) == 0, timeout=90, what=W2 + " drained")
    # Several scans and candidate polls later, nobody has touched the paused wiki.
    for pod in (a, b):
        wait_until(lambda p=pod: p.metrics().get("jobdrainer_wikis_paused") == 1, timeout=20,
                   what="paused gauge")
    scans = a.metrics()["jobdrainer_scans_total"] + b.metrics()["jobdrainer_scans_total"]
    wait_until(lambda: a.metrics()["jobdrainer_scans_total"] +
               b.metrics()["jobdrainer_scans_total"] >= scans + 3, timeout=30,
               what="three more scans")
    assert farm.ready_jobs(W1) == 120
    assert not a.batches(W1) and not b.batches(W1)
    assert a.metrics()["jobdrainer_all_wikis_paused"] == 0
    # A paused wiki's backlog is not "late": it stays out of the fleet's oldest age.
    wait_until(lambda: a.metrics()["jobdrainer_oldest_ready_job_age_seconds"] == 0,
               timeout=20, what="oldest age without the paused wiki")

    # status names the pause: who, why, until when.
    text = cli(a, "status").stdout
    assert "paused (no batches until resumed" in text and W1 in text
    assert "reason: database migration" in text
    st = status_json(a)
    [p] = st["paused"]
    assert p["wiki"] == W1 and p["all"] is False and p["until"] is None
    assert p["reason"] == "database migration" and "@" in p["by"]

    # The operator's drain honours it too.
    r = cli(a, "drain", "--wiki", W1)
    assert r.returncode == 1 and "paused by" in r.stderr, r.stderr
    assert farm.ready_jobs(W1) == 120

    r = cli(b, "resume", "--wiki", W1)
    assert r.returncode == 0 and W1 + ": resumed" in r.stdout, r.stdout
    wait_until(lambda: farm.ready_jobs(W1) == 0, timeout=90, what=W1 + " drained after resume")
    assert status_json(a)["paused"] == []
    r = cli(b, "resume", "--wiki", W1)
    assert r.returncode == 0 and "was not paused" in r.stdout
    assert a.stop() == 0 and b.stop() == 0


def test_pause_makes_the_holder_let_go_at_its_next_batch(farm, sidecars):
    # 600 jobs of 20 ms in batches of 20: a batch lasts about 0.4 s, the drain 12 s.
    farm.push_null_jobs(W3, 600, usleep_us=20000)
    pod = sidecars("steer-hold", farm_ini(farm, sidecar={"workers": 1},
                                          mediawiki={"maxjobs": 20}))
    pod.wait_for(lambda l: l.get("msg") == "batch" and l.get("wiki") == W3, timeout=60,
                 what="draining " + W3)
    r = cli(pod, "pause", "--wiki", W3, "--reason", "bot import")
    assert r.returncode == 0, r.stderr
    line = pod.wait_for(lambda l: l.get("msg") == "wiki paused: letting go", timeout=30,
                        what="the holder letting go")
    assert line["wiki"] == W3 and line["reason"] == "bot import" and line["until"] == "resumed"
    # The lease was released, not lost: no lease_lost error, and nobody holds it.
    wait_until(lambda: pod.metrics()["jobdrainer_leases_held"] == 0, timeout=10,
               what="lease released")
    assert pod.metrics()['jobdrainer_errors_total{kind="lease_lost"}'] == 0
    left = farm.ready_jobs(W3)
    assert left > 0
    batches = len(pod.batches(W3))
    # A few scans (and candidate polls) later: still untouched.
    scans = pod.metrics()["jobdrainer_scans_total"]
    wait_until(lambda: pod.metrics()["jobdrainer_scans_total"] >= scans + 3, timeout=30,
               what="three more scans")
    assert farm.ready_jobs(W3) == left and len(pod.batches(W3)) == batches
    assert cli(pod, "resume", "--wiki", W3).returncode == 0
    wait_until(lambda: farm.ready_jobs(W3) == 0, timeout=120, what=W3 + " drained after resume")
    assert pod.stop() == 0


def test_pause_all_for_a_while_ends_by_itself(farm, sidecars):
    ini = farm_ini(farm)
    a = sidecars("steer-all-a", ini, start=False)
    r = cli(a, "pause", "--all", "--for", "6s", "--reason", "maintenance window")
    assert r.returncode == 0, r.stderr
    assert "every wiki" in r.stdout and "(in " in r.stdout
    until = status_json(a)["paused"][0]["until"]
    assert status_json(a)["paused"][0]["all"] is True
    # A wiki paused on its own stays paused after the window.
    assert cli(a, "pause", "--wiki", W2).returncode == 0
    farm.push_null_jobs(W1, 50)
    farm.push_null_jobs(W2, 50)
    a.start()
    b = sidecars("steer-all-b", ini)
    wait_until(lambda: a.metrics().get("jobdrainer_all_wikis_paused") == 1, timeout=20,
               what="all-paused gauge")
    wait_until(lambda: farm.ready_jobs(W1) == 0, timeout=90, what=W1 + " drained after the window")
    # Not one batch went out before the window ended (log times are UTC, like until).
    for pod in (a, b):
        for line in pod.batches(W1):
            assert line["ts"][:19] >= until[:19], (line, until)
    wait_until(lambda: a.metrics()["jobdrainer_all_wikis_paused"] == 0, timeout=20,
               what="all-paused gauge back to 0")
    assert farm.ready_jobs(W2) == 50
    st = status_json(a)
    assert [p["wiki"] for p in st["paused"]] == [W2]
    r = cli(a, "resume", "--all")
    assert r.returncode == 0 and "nothing to lift" in r.stdout and "still paused" in r.stdout
    assert cli(a, "resume", "--wiki", W2).returncode == 0
    wait_until(lambda: farm.ready_jobs(W2) == 0, timeout=90, what=W2 + " drained")
    assert a.stop() == 0 and b.stop() == 0


def test_pause_command_line_errors(farm, sidecars):
    pod = sidecars("steer-cli", farm_ini(farm), start=False)
    for args, why in [(("pause",), "--wiki DOMAIN or --all"),
                      (("pause", "--wiki", W1, "--all"), "--wiki DOMAIN or --all"),
                      (("pause", "--wiki", W1, "--for", "soon"), "not a duration"),
                      (("pause", "--wiki", W1, "--for", "400d"), "not a duration"),
                      (("resume", "--wiki", W1, "--reason", "x"),
                       "--reason goes with the pause command"),
                      (("drain", "--wiki", W1, "--for", "1h"), "--for goes with the pause command")]:
        r = cli(pod, *args)
        assert r.returncode == 2 and why in r.stderr, (args, r.stderr)
    r = cli(pod, "pause", "--wiki", "not a domain")
    assert r.returncode == 2 and "not a wiki domain" in r.stderr


def pause_rows(farm):
    # The schema may not exist yet on a fresh farm: no table, no pause.
    try:
        return farm.sql("SELECT domain FROM jobdrainer.jd_pause")
    except Exception:
        return ()


def test_pause_and_resume_refuse_a_wiki_discovery_does_not_list(farm, sidecars):
    pod = sidecars("steer-unknown", farm_ini(farm), start=False)
    before = pause_rows(farm)
    # Unknown, and a spelling of W1 that discovery does not list (domains match byte
    # for byte, as discovery lists them): exit 4, no jd_pause row, the listed name said.
    for domain in ("nosuch.farm.test", W1.upper(), W1 + "."):
        r = cli(pod, "pause", "--wiki", domain, "--reason", "typo")
        assert r.returncode == 4 and "discovery does not list " + domain in r.stderr, r.stderr
        assert "paused" not in r.stdout
        if domain != "nosuch.farm.test":
            assert "it lists " + W1 in r.stderr, r.stderr
        r = cli(pod, "resume", "--wiki", domain)
        assert r.returncode == 4 and "does not list" in r.stderr, r.stderr
    assert pause_rows(farm) == before
    # --all names no wiki: unaffected.
    assert cli(pod, "pause", "--all", "--for", "60s").returncode == 0
    assert cli(pod, "resume", "--all").returncode == 0
    # A pause outlives its wiki's listing: once W1 is no longer listed (deleted), its own
    # pause can still be lifted.
    assert cli(pod, "pause", "--wiki", W1).returncode == 0
    farm.set_deleted(W1)
    try:
        r = cli(pod, "resume", "--wiki", W1)
        assert r.returncode == 0 and "lifted all the same" in r.stdout, r.stdout + r.stderr
        assert cli(pod, "resume", "--wiki", W1).returncode == 4
    finally:
        farm.set_deleted(W1, False)
    assert pause_rows(farm) == before


def probe_runs(farm, tag):
    try:
        return [p for p in farm.probe_runs() if p.get("tag") == tag]
    except FileNotFoundError:
        return []


def test_priority_types_run_first_and_the_rest_still_drains(farm, sidecars):
    # A backlog of 3000 null jobs of 2 ms and 200 priority jobs. Untyped, MediaWiki
    # pops a random type for every job (about half of each batch would be nulls); with
    # the list, the first batches ask for farmProbe only.
    farm.push_null_jobs(W3, 3000, usleep_us=2000)
    farm.push_probe_jobs(W3, 200, tag="prio")
    pod = sidecars("steer-prio", farm_ini(farm, sidecar={"workers": 1},
                                          drain={"priority_types": "nosuch*, farmProbe"}))
    wait_until(lambda: len(probe_runs(farm, "prio")) == 200, timeout=90, what="probe jobs run")
    # Every priority job ran ahead of the backlog: nearly all of it is still queued.
    assert farm.ready_jobs(W3, cmd="null") >= 2900
    first = pod.wait_for(lambda l: l.get("msg") == "batch", timeout=30, what="first batch")
    assert first.get("type") == "farmProbe" and first["jobs_ok"] > 0, first
    # The type asked for is signed: MediaWiki accepted it (no 400) and ran only it.
    line = pod.wait_for(lambda l: l.get("type") == "farmProbe" and l.get("outcome") == "drained",
                        timeout=30, what="farmProbe answered none-ready")
    assert line["next"] == "next batch", line
    wait_until(lambda: farm.total_jobs(W3) == 0, timeout=180, what="the rest drained")
    batches = pod.batches(W3)
    assert all(b["http_status"] == 200 for b in batches)
    # Typed batches ran every priority job, then untyped batches the rest (a scan that
    # started before the last priority job ran may still list the type: an empty typed
    # batch later, nothing more).
    untyped = [i for i, b in enumerate(batches) if b.get("type") is None]
    assert untyped and sum(b["jobs_ok"] for b in batches[:untyped[0]]
                           if b.get("type") == "farmProbe") == 200, batches[:5]
    assert all(b.get("type") is None or b["jobs_ok"] == 0 for b in batches[untyped[0]:]), batches
    assert pod.stop() == 0


def test_skip_types_are_left_to_other_runners(farm, sidecars):
    farm.push_null_jobs(W1, 150)
    farm.push_probe_jobs(W1, 7, tag="skip")
    pod = sidecars("steer-skip", farm_ini(farm, drain={"skip_types": "farm*"}))
    wait_until(lambda: farm.ready_jobs(W1, cmd="null") == 0, timeout=90, what="nulls drained")
    # Every batch asked for one type, never a skipped one.
    batches = pod.batches(W1)
    assert batches and all(b.get("type") == "null" for b in batches), batches
    # The skipped jobs are no backlog of this fleet: the wiki is not waiting.
    wait_until(lambda: [w for w in status_json(pod)["wikis_shown"]
                        if w["wiki"] == W1 and w["state"] == "idle"], timeout=30,
               what=W1 + " idle in status")
    assert farm.ready_jobs(W1, cmd="farmProbe") == 7 and probe_runs(farm, "skip") == []
    assert pod.stop() == 0
    # The operator's drain follows the lists too: new nulls run, typed; the rest stays.
    farm.push_null_jobs(W1, 20)
    r = cli(pod, "drain", "--wiki", W1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "type=null outcome=" in r.stdout and "type=farm" not in r.stdout, r.stdout
    assert farm.ready_jobs(W1, cmd="null") == 0 and farm.ready_jobs(W1, cmd="farmProbe") == 7
    r = cli(pod, "drain", "--wiki", W1)
    assert "only job types of [drain] skip_types are ready" in r.stdout, r.stdout
    # Clean up for the other tests: another runner takes them.
    farm.run_jobs_php(W1)
    assert farm.total_jobs(W1) == 0


def test_status_wiki_by_type_with_claimed_and_abandoned_rows(farm, sidecars):
    import time as _t
    jt = farm.wiki(W2).job_table
    farm.sql("DELETE FROM %s" % jt)
    farm.push_null_jobs(W2, 30)
    farm.push_probe_jobs(W2, 5, tag="view")
    farm.insert_raw_jobs(W2, 4, cmd="farmNoSuchJob")
    # Rows a runner claimed 20 minutes ago: 2 at MediaWiki's retry limit (abandoned), 3
    # still to be retried.
    old = _t.strftime("%Y%m%d%H%M%S", _t.gmtime(_t.time() - 1200))
    farm.sql("UPDATE %s SET job_token = 'gone', job_token_timestamp = %%s, job_attempts = 3"
             " WHERE job_cmd = 'null' ORDER BY job_id LIMIT 2" % jt, (old,))
    farm.sql("UPDATE %s SET job_token = 'gone', job_token_timestamp = %%s, job_attempts = 1"
             " WHERE job_cmd = 'null' AND job_token = '' ORDER BY job_id LIMIT 3" % jt, (old,))
    pod = sidecars("steer-view", farm_ini(farm), start=False)

    r = cli(pod, "status", "--wiki", W2, "--json")
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    types = {t["type"]: t for t in view["types"]}
    assert set(types) == {"null", "farmProbe", "farmNoSuchJob"}
    assert (types["null"]["ready"], types["null"]["claimed"], types["null"]["abandoned"]) == (25, 5, 2)
    assert (types["farmProbe"]["ready"], types["farmProbe"]["claimed"]) == (5, 0)
    assert types["farmNoSuchJob"]["ready"] == 4
    assert all(t["oldest_ready_age_s"] >= 0 and not t["ready_at_least"] for t in types.values())
    text = cli(pod, "status", "--wiki", W2).stdout
    assert "TYPE" in text and "farmNoSuchJob" in text and "ABANDONED" in text

    pod.start()
    wait_until(lambda: farm.ready_jobs(W2, cmd="null") == 0 and
               farm.ready_jobs(W2, cmd="farmProbe") == 0, timeout=90, what="runnable rows drained")
    # Only rows MediaWiki will not run are left ready: the wiki parks, and says why.
    pod.wait_for(lambda l: l.get("msg", "").startswith("wiki parked"), timeout=60, what="parked")
    view = json.loads(cli(pod, "status", "--wiki", W2, "--json").stdout)
    assert view["state"] == "parked" and "does not run" in view["why"], view
    assert agreed_states(pod).get(W2) == "parked"
    assert view["lease"]["holder"] is None and view["last_holder"].startswith("steer-view:")
    assert view["recent_drains"] and view["recent_drains"][0]["holder"].startswith("steer-view:")
    assert sum(d["jobs"] for d in view["recent_drains"]) >= 30
    types = {t["type"]: t for t in view["types"]}
    assert types["null"]["ready"] == 0 and types["null"]["abandoned"] == 2
    # The fleet view lists the wiki with abandoned jobs (from the full scan).
    fleet = status_json(pod)
    assert {"wiki": W2, "abandoned_jobs": 2} in fleet["abandoned"], fleet["abandoned"]
    assert "abandoned jobs (claimed, at MediaWiki's retry limit" in cli(pod, "status").stdout
    assert view["abandoned_jobs"] == 2
    r = cli(pod, "status", "--wiki", "nosuch.farm.test")
    assert r.returncode == 4 and "does not list" in r.stderr
    assert pod.stop() == 0

    # What to do about them: MediaWiki's own command, spelled for this wiki and type. No
    # [discovery] version names the release: both forms, 1.40 and later first.
    w = farm.wiki(W2)
    wiki_id = "%s-%s_" % (w.dbname, w.prefix)
    [req] = view["requeue_abandoned"]
    assert (req["type"], req["abandoned"]) == ("null", 2)
    assert req["commands"] == [
        {"mediawiki": "1.40+", "command": "php maintenance/run.php manageJobs --wiki %s "
         "--type null --action repush-abandoned" % wiki_id},
        {"mediawiki": "1.39", "command": "php maintenance/manageJobs.php --wiki %s "
         "--type null --action repush-abandoned" % wiki_id}]
    text = cli(pod, "status", "--wiki", W2).stdout
    assert "MediaWiki 1.40 and later: " + req["commands"][0]["command"] in text, text
    assert "env WBS_DOMAIN=" + W2 in text
    # With the release named, only its form.
    named = sidecars("steer-view-139", farm_ini(farm, discovery={"version": w.version}),
                     start=False)
    view = json.loads(cli(named, "status", "--wiki", W2, "--json").stdout)
    assert [c["mediawiki"] for c in view["requeue_abandoned"][0]["commands"]] == \
        (["1.39"] if "1.39" in w.version else ["1.40+"])
    # The command works: run in MediaWiki's directory (the farm picks the wiki by
    # WBS_DOMAIN, like wbstack), it queues the 2 abandoned jobs again.
    [cmd] = [c["command"] for c in req["commands"]
             if c["mediawiki"] == ("1.40+" if mw_at_least("1.40") else "1.39")]
    argv = shlex.split(cmd)
    assert argv[0] == "php"
    r = subprocess.run([PHP_BIN] + argv[1:], cwd=MW_DIR, env=farm.php_env(W2),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert farm.ready_jobs(W2, cmd="null") == 2
    farm.sql("DELETE FROM %s" % jt)


def fleet_states(pod):
    return {w["wiki"]: w["state"] for w in status_json(pod)["wikis_shown"]}


def agreed_states(pod, tries=3):
    """Each wiki's state as `status` and `status --wiki` give it: {wiki: state} for the
    wikis whose `status` state held while both were read (a state that changed meanwhile
    gives no verdict). Asserts that the two views agree on every one of them. A state
    can also change and change back between the reads (a read-only wiki is "draining"
    while its retry batch is out): a wiki whose views differ is read again, and only a
    difference on every try fails."""
    out = {}
    for attempt in range(tries):
        first = fleet_states(pod)
        detail = {}
        for wiki in first:
            if wiki in out:
                continue
            r = cli(pod, "status", "--wiki", wiki, "--json")
            assert r.returncode == 0, r.stderr
            detail[wiki] = json.loads(r.stdout)
        again = fleet_states(pod)
        differ = []
        for wiki, d in detail.items():
            state = first[wiki]
            if again.get(wiki) != state:
                continue
            if d["state"] == state:
                out[wiki] = state
            else:
                differ.append((wiki, state, d))
        if not differ:
            break
    assert not differ, differ
    return out


def test_status_views_agree_on_every_state(farm, sidecars):
    for w in (W1, W2, W3):
        farm.sql("DELETE FROM %s" % farm.wiki(w).job_table)
    # W1: MediaWiki answers 423 (read-only, as during Wikibase Cloud's upgrade job); W2:
    # paused with a backlog (`status` used to call it waiting); W3: a wrong secret, so
    # its batches fail (backoff).
    farm.push_null_jobs(W1, 20)
    farm.set_read_only(W1)
    farm.push_null_jobs(W2, 20)
    farm.push_null_jobs(W3, 20)
    farm.set_mw_secret(W3, "not-the-platform-secret")
    pod = sidecars("steer-states", farm_ini(farm, mediawiki={"maxjobs": 5, "maxjobs_alone": 5},
                                            drain={"time_slice": 3600, "backoff_base": 1,
                                                   "backoff_max": 3}), start=False)
    assert cli(pod, "pause", "--wiki", W2, "--reason", "states test").returncode == 0
    try:
        pod.start()
        want = {W1: "read-only", W2: "paused", W3: "backoff"}
        wait_until(lambda: want.items() <= agreed_states(pod).items(), timeout=60,
                   what="read-only, paused and backoff in both views")
        view = json.loads(cli(pod, "status", "--wiki", W1, "--json").stdout)
        assert "read-only" in view["why"] and view["last_outcome"] == "read_only", view
        assert farm.ready_jobs(W1) == 20 and farm.ready_jobs(W2) == 20

        # W3 fixed, with slow jobs: a sidecar holds it (draining) for a while.
        farm.push_null_jobs(W3, 100, usleep_us=300000)
        farm.set_mw_secret(W3, farm.wiki(W3).secret)
        wait_until(lambda: agreed_states(pod).get(W3) == "draining", timeout=60,
                   what=W3 + " draining in both views")
        # Stopped mid-drain: W3 keeps a backlog and nobody holds it (waiting).
        assert pod.stop() == 0
        assert farm.ready_jobs(W3) > 0
        want = {W1: "read-only", W2: "paused", W3: "waiting"}
        assert agreed_states(pod) == want
        # The text views say the same.
        text = cli(pod, "status").stdout
        for wiki, state in want.items():
            [row] = [l for l in text.splitlines() if l.startswith(wiki + " ")]
            assert row.split()[1] == state, row
            first = cli(pod, "status", "--wiki", wiki).stdout.splitlines()[0]
            assert first.startswith("%s: %s (" % (wiki, state)), first
    finally:
        farm.set_read_only(W1, "")
        farm.set_mw_secret(W3, farm.wiki(W3).secret)
        cli(pod, "resume", "--wiki", W2)
        for w in (W1, W2, W3):
            farm.sql("DELETE FROM %s" % farm.wiki(w).job_table)
