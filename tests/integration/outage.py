"""The compound fault scenario (tests/integration/test_fault_isolation.py and
tests/bench/bench_outage.py): individually broken wikis of every kind beside healthy
wikis with backlogs, behind the fault proxy, and MediaWiki as a whole failing."""

import time

from faults import slow_ok

JSON = "application/json"


def _hang(handler):
    time.sleep(600)  # longer than any batch timeout: the sidecar gives up first
    handler.answer(200, b"{}", JSON)


# host prefix -> fault, one per kind of individually broken wiki
BROKEN_KINDS = {
    "html": (200, b"<html><body><h1>Welcome</h1>not RunJobs</body></html>", "text/html"),
    "truncated": (200, b'{"jobs":[{"type":"null","status":"ok"},{"type":', JSON),
    "types": (200, b'{"jobs":"many","reached":7,"backoffs":[],"elapsed":"x"}', JSON),
    "err500": (500, b"<html><h1>Internal error</h1><p>[abc] Exception: boom</p></html>",
               "text/html"),
    "hang": _hang,
    "nojobs": (200, b'{"jobs":[],"reached":"job-limit","backoffs":[],"elapsed":1}', JSON),
}
OUTAGE_503 = (503, b"<h1>Service Unavailable</h1>", "text/html")


def broken_domains(kinds=None):
    return ["broken-%s.farm.test" % k for k in (kinds or BROKEN_KINDS)]


def add_compound_farm(farm, healthy, jobs_per_healthy, kinds=None):
    """Adds the wikis (if missing) and backlogs; returns (healthy, broken, faults)."""
    broken = broken_domains(kinds)
    for d in list(healthy) + broken:
        if d not in farm.wikis:
            farm.add_wiki(d)
    for d in healthy:
        farm.push_null_jobs(d, jobs_per_healthy)
    for d in broken:
        if farm.ready_jobs(d) < 5:
            farm.push_null_jobs(d, 5)
    faults = {d: BROKEN_KINDS[d.split("-", 1)[1].split(".")[0]] for d in broken}
    return list(healthy), broken, faults


class Outage:
    """MediaWiki failing for every wiki on the proxy: 503s (mode '503'), or refusing
    connections with Apache stopped (mode 'refused')."""

    def __init__(self, proxy, farm, mode="503"):
        self.proxy, self.farm, self.mode = proxy, farm, mode
        self.saved = None

    def begin(self):
        if self.mode == "503":
            self.saved = self.proxy.faults
            self.proxy.faults = {}
            self.proxy.default = OUTAGE_503
        else:
            self.proxy.refuse()
            self.farm._stop_service("apache2")
        return time.time()

    def end(self):
        """Returns the time MediaWiki answers again."""
        if self.mode == "503":
            self.proxy.default = None
            self.proxy.faults = self.saved
        else:
            self.farm._start_apache()
            self.proxy.upstream_port = self.farm.http_port
            self.proxy.listen_again()
        return time.time()


def apache_successes(farm, hosts, since):
    """Start times of RunJobs POSTs Apache answered 200 for these hosts since `since`."""
    hosts = set(hosts)
    return sorted(e["start"] for e in farm.access_log_entries()
                  if e["host"] in hosts and e["start"] >= since and e["status"] == 200
                  and e["request"].startswith("POST "))


__all__ = ["BROKEN_KINDS", "OUTAGE_503", "Outage", "add_compound_farm", "apache_successes",
           "broken_domains", "slow_ok"]
