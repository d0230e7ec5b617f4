"""Fixtures: one real farm (MariaDB + Apache/mod_php + Debian MediaWiki) per test module,
and sidecars that are stopped whatever happens."""

import os
import shutil
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "farm"))
sys.path.insert(0, HERE)

from farm import Farm  # noqa: E402
from sidecar import BINARY, Sidecar  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def built_binary():
    if not os.access(BINARY, os.X_OK):
        pytest.exit("%s is not built: run make first" % BINARY, returncode=2)


@pytest.fixture(scope="module")
def farm():
    # Not pytest's tmp_path: Apache's workers (www-data) must traverse the farm's parents.
    d = tempfile.mkdtemp(prefix="jdtest-", dir="/tmp")
    os.chmod(d, 0o755)
    f = Farm(os.path.join(d, "farm"))
    f.start(wikis=3)
    yield f
    f.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sidecars(tmp_path):
    """Factory: sidecars(name, ini_text) -> started Sidecar; all stopped at teardown."""
    started = []

    def make(name, ini_text, env=None, start=True):
        s = Sidecar(str(tmp_path), name, ini_text, env=env)
        started.append(s)
        return s.start() if start else s

    yield make
    for s in started:
        s.kill()
