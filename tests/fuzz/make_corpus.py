#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer targets: tests/fuzz/corpus/config/ (INI files)
and tests/fuzz/corpus/response/ (a 2-byte HTTP status selector + a Special:RunJobs body).

The corpora are committed; this script documents what each seed is for and regenerates
them after a change of the input layout. `make fuzz` never writes into them: it fuzzes
a scratch copy. Files that libFuzzer found worth keeping may be added by hand (name
them after what they cover); this script only (re)writes the files it names.

  /usr/bin/python3 tests/fuzz/make_corpus.py
"""

import json
import os
import random
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# ---- config ---------------------------------------------------------------------------

CONFIG = {
    "empty.ini": "",
    "minimal.ini": "[sidecar]\nworkers = 4\n",
    "sidecar-all-keys.ini":
        "[sidecar]\nworkers = 64\nholder = pod-a:17\nlog_format = json\n"
        "log_level = debug\nshutdown_timeout = 3600\n",
    "mediawiki-all-keys.ini":
        "[mediawiki]\nhost = mw.internal\nport = 8080\npath = /w/index.php\nmaxjobs = 1\n"
        "maxtime = 1\ntimeout_allowance = 1\nconnect_timeout = 300\nsignature_ttl = 5\n"
        "max_body_kib = 65536\n",
    "platform-db-password.ini":
        "[platform_db]\nhost = db\nport = 3307\nuser = u\npassword = s3cret\n"
        "database = apidb\nconnect_timeout = 1\nquery_timeout = 3600\n",
    "platform-db-socket-env.ini":
        "[platform_db]\nsocket = /run/mysqld/mysqld.sock\npassword_env = FUZZ_PASSWORD\n",
    "password-env-empty-and-unset.ini":
        "[platform_db]\npassword_env = FUZZ_EMPTY\n[scan_db]\npassword_env = FUZZ_NOT_SET\n",
    "password-file.ini":
        "[platform_db]\npassword_file = /etc/debian_version\n"
        "[scan_db]\nhost = replica\npassword_file = /nonexistent/pw\n",
    "password-conflict.ini":
        "[scan_db]\npassword_env = FUZZ_PASSWORD\n\npassword = a\npassword_file = /x\n",
    "scan-db-inherits.ini":
        "[platform_db]\nhost = primary\nport = 3306\npassword = p\n"
        "[scan_db]\nhost = replica\nquery_timeout = 5\n[scan]\ninterval = 1\n"
        "wikis_per_query = 1000\n",
    "discovery-continuation.ini":
        "[discovery]\nquery = SELECT domain, db, prefix, secret ; inline comment\n"
        "    FROM wikis   ; more\n\tWHERE deleted_at IS NULL\n"
        "    ORDER BY id\nversion = mw1.39-wbs1\ninterval = 86400\n",
    "continuation-on-single-line-key.ini": "[sidecar]\nworkers = 2\n  3\n\tholder\n",
    "drain-coordination.ini":
        "[drain]\ntime_slice = 1\nbackoff_base = 600\nbackoff_max = 5\n"
        "max_workers_per_wiki = 64\npark_interval = 10\n"
        "[coordination]\ndatabase = jd$1\nlease_ttl = 5\nrenew_interval = 3600\n"
        "safety_margin = 600\npoll_interval_ms = 50\n",
    "lease-timing-ok.ini":
        "[mediawiki]\nmaxtime = 100\ntimeout_allowance = 100\n"
        "[coordination]\nlease_ttl = 300\nsafety_margin = 10\nrenew_interval = 60\n",
    "bad-values.ini":
        "[sidecar]\nworkers = 0\nshutdown_timeout = +3\nlog_format = xml\nlog_level = \n"
        "[mediawiki]\nport = 99999\nmaxjobs = 0x10\nmaxtime = 1e3\nconnect_timeout = -0\n"
        "signature_ttl = 9223372036854775808\nmax_body_kib =  4 \npath = w/index.php\n"
        "[coordination]\ndatabase = `drop`\n[sidecar]\nworkers = 2\n",
    "http-listen.ini": "[http]\nlisten = 127.0.0.1:0\n",
    "http-listen-bad-port.ini": "[http]\nlisten = [::1]:99999\n",
    "http-listen-no-port.ini": "[http]\nlisten = localhost:\n",
    "http-listen-off.ini": "[http]\nlisten =\n",
    "drain-limits.ini":
        "[drain]\nbatches_per_second = 0\nbreaker_failures = 1\nwiki_min_interval_ms = 0\n"
        "[scan]\nqueries_per_second = 1000\n",
    "holder-with-space.ini": "[sidecar]\nholder = pod a\n",
    "structure-errors.ini":
        "workers = 1\n[nosuch]\nfoo = 1\n[sidecar\n[sidecar]\nfoo = bar\n"
        "just a line\nworkers = 2\nworkers = 3\n[]\n= value\n[scan]\ninterval: 7\n",
    "comments.ini":
        "; comment\n# hash comment\n\n[sidecar] ; after a header\nworkers = 3 ; inline\n"
        "holder = a;b\n   ; indented comment\n",
    "crlf-bom.ini": "\ufeff[sidecar]\r\nworkers = 2\r\n[scan]\r\ninterval = 9\r\n",
    "overlong-line.ini":
        "[sidecar]\nholder = " + "h" * 189 + "\n"
        "[discovery]\nquery = SELECT " + "x, " * 120 + "1\n"
        "[scan]\ninterval = 5\n",
    "long-continuation.ini":
        "[discovery]\nquery = SELECT 1\n" + "".join("    UNION SELECT %d\n" % i
                                                     for i in range(2, 400)),
    "long-section-and-key.ini":
        "[" + "s" * 120 + "]\n" + "k" * 100 + " = v\n[sidecar]\n" + "k" * 70 + " = 1\n",
}


def config_binary_seeds():
    rnd = random.Random(4711)
    junk = bytes(rnd.randrange(256) for _ in range(300))
    return {
        "binary-junk.bin": junk,
        "nul-in-line.ini": b"[sidecar]\nworkers = 2\x003\nholder = a\x00\n[sc\x00an]\n",
        "no-final-newline.ini": b"[sidecar]\nworkers = 2",
        "latin1.ini": b"[sidecar]\nholder = caf\xe9\n",
    }


# ---- response ---------------------------------------------------------------------------

# Byte 0 indexes statuses[] in fuzz_response.c; past the table the 2 bytes are a raw
# status, ((byte 0 - NSTATUSES) << 8 | byte 1). Keep in step with fuzz_response.c.
STATUS_INDEX = {200: 0, 400: 4, 401: 5, 403: 6, 404: 7, 423: 8, 429: 9, 500: 10, 502: 11,
                503: 12, 302: 13, 301: 14, 204: 15, 0: 16, 199: 17}
NSTATUSES = 18


def prefix(status):
    if status in STATUS_INDEX:
        return bytes([STATUS_INDEX[status], 0])
    return bytes([NSTATUSES + (status >> 8), status & 0xff])


def job(type_, ok=True):
    if ok:
        return {"type": type_, "status": "ok", "error": None, "time": 12}
    return {"type": type_, "status": "failed", "error": "Exception: boom", "time": 3}


def body(jobs, reached, backoffs=None, elapsed=None):
    d = {"jobs": jobs, "reached": reached}
    if backoffs is not None:
        d["backoffs"] = backoffs
    if elapsed is not None:
        d["elapsed"] = elapsed
    return json.dumps(d, separators=(",", ":"))


HTML_400 = """<!DOCTYPE html>
<html><head><meta charset="UTF-8"/><title>Bad Request</title></head>
<body><h1>Bad Request</h1><p>Invalid or stale signature provided.</p></body></html>
"""
HTML_500 = """<!DOCTYPE html>
<html><head><title>Internal error - MediaWiki</title></head><body>
<p>[a1b2c3d4e5f6] /w/index.php?title=Special:RunJobs   Wikimedia\\Rdbms\\DBConnectionError:
Cannot access the database: Too many connections (127.0.0.1)</p></body></html>
"""

RESPONSE = {
    "none-ready.json": (200, body([job("refreshLinks")], "none-ready", [], 31)),
    "job-limit.json": (200, body([job("refreshLinks"), job("htmlCacheUpdate"),
                                  job("cirrusSearchLinksUpdate", False)],
                                 "job-limit", [], 1234)),
    "time-limit-real-elapsed.json": (200, '{"jobs":[],"reached":"time-limit",'
                                          '"backoffs":[],"elapsed":15234.0}'),
    "memory-limit.json": (200, body([job("a")], "memory-limit", [], 99)),
    "replica-lag-limit.json": (200, body([], "replica-lag-limit", [], 5)),
    "exception.json": (200, body([job("x", False)], "exception", [], 7)),
    "none-possible-backoffs-object.json":
        (200, body([], "none-possible", {"htmlCacheUpdate": 1700000100,
                                         "refreshLinks": 1700000200}, 3)),
    "read-only.json": (200, body([], "read-only", [], 0)),
    "early-exit.json": (200, '{"jobs":[],"reached":"none-ready"}'),
    "whitespace.json": (200, '\n  {"jobs":[],"reached":"none-ready"}\n'),
    "php-warning-prefix.txt":
        (200, '<br />\n<b>Warning</b>: foo\n{"jobs":[],"reached":"none-ready"}'),
    "truncated.json": (200, '{"jobs":[{"type":"refreshLinks","status":"ok"'),
    "trailing-garbage.json": (200, '{"jobs":[],"reached":"none-ready"}GARBAGE'),
    "empty-200.txt": (200, ""),
    "top-level-array.json": (200, '[{"jobs":[],"reached":"none-ready"}]'),
    "duplicate-key.json": (200, '{"jobs":[],"reached":"none-ready","reached":"job-limit"}'),
    "wrong-types.json": (200, '{"jobs":{},"reached":3,"backoffs":"x","elapsed":"40"}'),
    "job-not-object.json": (200, '{"jobs":["ok",{"type":"b","time":1},{"status":7}],'
                                 '"reached":"job-limit"}'),
    "unknown-reached-long.json":
        (200, '{"jobs":[],"reached":"a-very-long-reached-value-from-the-future-xxxxxxxx"}'),
    "unicode-escapes.json": (200, '{"jobs":[{"type":"\\u00e9\\ud83d\\ude00","status":"ok"}],'
                                  '"reached":"none\\u002dready","elapsed":-1}'),
    # Regression: a real "elapsed" beyond long long's range (response.c casts it).
    "elapsed-huge.json": (200, '{"jobs":[],"reached":"none-ready","backoffs":[],'
                               '"elapsed":1e300}'),
    "elapsed-int-max.json": (200, '{"jobs":[],"reached":"none-ready",'
                                  '"elapsed":9223372036854775807}'),
    "html-400.html": (400, HTML_400),
    "html-401.html": (401, "<html><body>Unauthorized</body></html>"),
    "html-403.html": (403, "<h1>Forbidden</h1>"),
    "no-such-wiki-404.txt": (404, "no such wiki\n"),
    "read-only-423.html": (423, "<html><body><p>The wiki is read-only: maintenance"
                                "</p></body></html>"),
    "too-many-429.txt": (429, "Too Many Requests"),
    "html-500.html": (500, HTML_500),
    "bad-gateway-502.html": (502, "<html><head><title>502 Bad Gateway</title></head></html>"),
    "unavailable-503.txt": (503, "Service Unavailable\r\n\tRetry later\x01\x7f"),
    "redirect-302.html": (302, '<a href="https://example.org/w/index.php">moved</a>'),
    "redirect-301.html": (301, ""),
    "no-content-204.txt": (204, ""),
    "status-0.json": (0, '{"jobs":[],"reached":"none-ready"}'),
    "status-199.txt": (199, "informational"),
    "status-raw-299.json": (299, '{"jobs":[],"reached":"none-ready"}'),
    "status-raw-599.html": (599, "<b>599</b>"),
    "status-raw-600.txt": (600, "x"),
    "unterminated-tag.html": (500, "<html <body " + "x" * 300),
}


def write(dirpath, name, data):
    os.makedirs(dirpath, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(dirpath, name), "wb") as f:
        f.write(data)


def main():
    cdir = os.path.join(HERE, "corpus", "config")
    os.makedirs(cdir, exist_ok=True)
    shutil.copyfile(os.path.join(REPO, "conf", "jobdrainer.ini"),
                    os.path.join(cdir, "shipped-jobdrainer.ini"))
    for name, text in CONFIG.items():
        write(cdir, name, text)
    for name, data in config_binary_seeds().items():
        write(cdir, name, data)
    rdir = os.path.join(HERE, "corpus", "response")
    for name, (status, text) in RESPONSE.items():
        write(rdir, name, prefix(status) + text.encode("utf-8"))
    print("wrote %d config and %d response seeds"
          % (len(CONFIG) + len(config_binary_seeds()) + 1, len(RESPONSE)))


if __name__ == "__main__":
    main()
