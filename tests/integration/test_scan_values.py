"""Values read from wiki tables never break the coordination writes of other wikis, on a
real farm: job types (job_cmd, any 60 bytes) with bytes >= 0x80, with a blank, and one
that is not even UTF-8, in the same scan chunk as healthy wikis; and a jd_wiki row the
coordination database refuses (a trigger stands in for any value it cannot store)."""

import subprocess
import time

import pytest

from farm import _php_serialize, temporary_farm
from sidecar import BINARY, farm_ini, wait_until

HEALTHY = ["ok%d.farm.test" % i for i in range(1, 5)]
# wiki: its job type, as job_cmd bytes
ODD = {
    "umlaut.farm.test": "\u00dcberProbe".encode(),  # UTF-8, the column is ASCII
    "blank.farm.test": b"farm Probe",  # the list of ready types is blank-separated
}
NOT_UTF8 = ("latin1.farm.test", b"\xe9t\xe9")  # MediaWiki cannot even be asked for it
REFUSED = "refused.farm.test"
REFUSED_MSG = ("backlog row refused by the coordination database; the other wikis are written,"
               " this one is retried next scan")

# The odd types are real job types of this farm (a probe under another name), so a
# typed batch that asks for them by their bytes runs them.
NAMED_PROBES = r"""
if ( !class_exists( 'FarmNamedProbeJob', false ) ) {
	class FarmNamedProbeJob extends FarmProbeJob {
		public function __construct( array $params ) {
			Job::__construct( $params['farmCmd'], $params );
			$this->removeDuplicates = false;
		}
	}
}
foreach ( [ "\xc3\x9cberProbe", "farm Probe" ] as $farmCmd ) {
	$wgJobClasses[$farmCmd] = static function ( $title, $params ) use ( $farmCmd ) {
		return new FarmNamedProbeJob( [ 'farmCmd' => $farmCmd ] + $params );
	};
}
"""


def ini(farm, **more):
    sections = {
        "sidecar": {"shutdown_timeout": 5},
        "mediawiki": {"maxjobs": 20, "maxtime": 5, "timeout_allowance": 5},
        "scan": {"interval": 1, "full_interval": 2},
        "coordination": {"lease_ttl": 15, "safety_margin": 2, "renew_interval": 3,
                         "poll_interval_ms": 200},
        # A skip list makes every batch ask for one type by name (jobtype_next): the
        # odd types' list form must reach MediaWiki as their bytes.
        "drain": {"time_slice": 1, "backoff_base": 1, "backoff_max": 5,
                  "skip_types": "farmNoSuchJob"},
    }
    for k, v in more.items():
        sections.setdefault(k, {}).update(v)
    return farm_ini(farm, **sections)


@pytest.fixture(scope="module")
def values_farm():
    with temporary_farm("jdvalues-") as f:
        for domain in HEALTHY + list(ODD) + [NOT_UTF8[0], REFUSED]:
            f.add_wiki(domain)
        f.set_settings_override(NAMED_PROBES)
        yield f


def insert_probes(farm, domain, cmd, count, tag):
    now = time.time()
    params = [_php_serialize({"tag": tag, "seq": seq, "pushed": now}).encode()
              for seq in range(count)]
    farm._insert_job_rows(domain, cmd, params, now)


def ran(farm, tag):
    """How many probes of `tag` ran, per wiki."""
    out = {}
    for r in farm.probe_runs():
        if r["tag"] == tag:
            out[r["domain"]] = out.get(r["domain"], 0) + 1
    return out


def jd_wiki(farm, domain):
    rows = farm.sql("SELECT oldest_ready_at, ready_type_names, scan_error FROM jobdrainer.jd_wiki"
                    " WHERE domain = %s", (domain,))
    return rows[0] if rows else None


def test_odd_job_types_stay_with_their_wiki(values_farm, sidecars):
    farm = values_farm
    for d in HEALTHY:
        insert_probes(farm, d, b"farmProbe", 30, "types")
    for d, cmd in ODD.items():
        insert_probes(farm, d, cmd, 30, "types")
    farm.insert_raw_jobs(NOT_UTF8[0], 5, cmd=NOT_UTF8[1])
    # The farm's Apache knows the odd types once it answers none-ready (no such job
    # on this wiki), not none-possible (no such type).
    wait_until(lambda: farm.runjobs(REFUSED, type="farm Probe")[1].get("reached")
               == "none-ready", timeout=30, what="the named probes loaded")
    pod = sidecars("values1", ini(farm))
    # Every wiki is in one scan chunk (wikis_per_query 50): one unstorable type used to
    # fail the chunk's write, so no wiki showed a backlog and nothing ran.
    want = {d: 30 for d in HEALTHY + list(ODD)}
    wait_until(lambda: ran(farm, "types") == want, timeout=120,
               what="the healthy and the odd-typed wikis' probes run")
    # The list forms, in the ASCII column, blank-separated.
    wait_until(lambda: (jd_wiki(farm, NOT_UTF8[0]) or (None,))[0] is not None, timeout=30,
               what="the non-UTF-8 wiki's backlog shown")
    row = jd_wiki(farm, NOT_UTF8[0])
    assert row[1] == "%E9t%E9", row
    assert row[2] is None, row
    lines = pod.lines()
    typed = {l.get("type") for l in lines if l.get("wiki") in ODD}
    assert {"%C3%9CberProbe", "farm%20Probe"} <= typed, typed
    assert not [l for l in lines if l.get("msg") == "scan failed"], \
        [l for l in lines if l.get("msg") == "scan failed"][:3]
    m = pod.metrics()
    assert m.get('jobdrainer_scan_rows_total{row="refused"}', 0) == 0, m
    # status --wiki shows the type as the lists hold it (printable, valid JSON).
    r = subprocess.run([BINARY, "--config", pod.ini, "status", "--wiki", NOT_UTF8[0], "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "%E9t%E9" in r.stdout, r.stdout
    assert pod.stop() == 0


def test_a_refused_row_costs_only_its_own_wiki(values_farm, sidecars):
    farm = values_farm
    pod = sidecars("values2", ini(farm))
    wait_until(lambda: jd_wiki(farm, REFUSED) is not None, timeout=60,
               what="the scan's first rows written")
    # From now on the coordination database refuses this one wiki's row, as it would
    # a value none of its columns can store.
    for event in ("INSERT", "UPDATE"):
        farm.sql("CREATE TRIGGER jobdrainer.refuse_%s BEFORE %s ON jobdrainer.jd_wiki"
                 " FOR EACH ROW IF NEW.domain = '%s' THEN SIGNAL SQLSTATE '45000'"
                 " SET MESSAGE_TEXT = 'farm test: row refused'; END IF"
                 % (event.lower(), event, REFUSED))
    try:
        for d in HEALTHY + [REFUSED]:
            insert_probes(farm, d, b"farmProbe", 20, "refused")
        want = {d: 20 for d in HEALTHY}
        wait_until(lambda: ran(farm, "refused") == want, timeout=120,
                   what="the healthy wikis' probes run beside the refused row")
        wait_until(lambda: pod.metrics().get('jobdrainer_scan_rows_total{row="refused"}', 0) >= 2,
                   timeout=30, what="refused rows counted")
        lines = pod.lines()
        refused = [l for l in lines if l.get("msg") == REFUSED_MSG]
        assert refused and {l.get("wiki") for l in refused} == {REFUSED}, refused[:3]
        assert "row refused" in refused[0]["error"], refused[0]
        # Its own backlog is not shown, so it is not drained; nothing else failed.
        assert jd_wiki(farm, REFUSED)[0] is None
        assert farm.ready_jobs(REFUSED) == 20
        assert not [l for l in lines if l.get("msg") == "scan failed"]
    finally:
        for event in ("insert", "update"):
            farm.sql("DROP TRIGGER IF EXISTS jobdrainer.refuse_%s" % event)
    assert pod.stop() == 0
