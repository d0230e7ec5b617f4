#!/usr/bin/python3
"""Fails when any sidecar log under DIR holds a sanitizer report.

The integration tests run each sidecar with its stdout and stderr in DIR/.../NAME.log,
so an AddressSanitizer, LeakSanitizer or UBSan report lands there. A test notices the
ones that change an exit code it checks; this catches the rest: a report in a pod that
a test SIGKILLs at teardown, or in one whose exit code no test asserts on.

  /usr/bin/python3 tests/sanitize/check_logs.py DIR [--allow-empty]

Exit status: 0 clean, 1 a report was found, 2 no log to check (DIR missing or holding
no *.log: a run that wrote its logs elsewhere must not pass by default)."""

import argparse
import os
import re
import sys

# What ASan, LSan and UBSan print first; the last also covers recoverable UBSan builds.
PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: AddressSanitizer|"
    r"runtime error:|SUMMARY: (?:AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)")
CONTEXT_LINES = 40


def scan(path):
    """Returns (line number, excerpt) of the first report in the file, or None."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    for i, line in enumerate(lines):
        if PATTERNS.search(line):
            return i + 1, "\n".join(lines[i:i + CONTEXT_LINES])
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--allow-empty", action="store_true",
                    help="exit 0 when there is no log to check")
    a = ap.parse_args(argv)

    logs = []
    for root, _dirs, files in os.walk(a.dir):
        logs.extend(os.path.join(root, f) for f in files if f.endswith(".log"))
    if not logs:
        print("check_logs: no *.log under %s" % a.dir, file=sys.stderr)
        return 0 if a.allow_empty else 2

    found = 0
    for path in sorted(logs):
        hit = scan(path)
        if hit is not None:
            found += 1
            print("check_logs: sanitizer report in %s:%d\n%s\n" % (path, hit[0], hit[1]))
    print("check_logs: %d of %d sidecar logs hold a sanitizer report" % (found, len(logs)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
