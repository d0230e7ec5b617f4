"""The command line: --version, --help, --check-config, exit codes, secrets masked."""

import os
import subprocess

from sidecar import BINARY, REPO


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BINARY] + list(args), capture_output=True, text=True, env=e,
                          timeout=20)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("jobdrainer ")
    r = run("--help")
    assert r.returncode == 0 and "--check-config" in r.stdout and "Exit status" in r.stdout
    r = run("--no-such-flag")
    assert r.returncode == 2 and "usage:" in r.stderr


def test_shipped_config_checks_clean():
    r = run("--check-config", "--config", os.path.join(REPO, "conf", "jobdrainer.ini"))
    assert r.returncode == 0, r.stderr
    assert "[discovery]" in r.stdout and "wiki_settings" in r.stdout


def test_check_config_masks_secrets_from_env_and_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-from-file\n")
    ini = tmp_path / "j.ini"
    ini.write_text("[platform_db]\npassword_env = JD_TEST_PW\n[scan_db]\nhost = replica\n"
                   "password_file = %s\n" % pw)
    r = run("--check-config", "--config", str(ini), env={"JD_TEST_PW": "s3cret-from-env"})
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout
    # [platform_db], [scan_db], and [binlog], which inherits [scan_db]'s endpoint
    assert r.stdout.count("password = ********") == 3
    assert "password_env = JD_TEST_PW" in r.stdout


def test_bad_config_names_file_line_and_key(tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[sidecar]\nworkers = many\n[mediawiki]\nmaxjobs = 0\nnope = 1\n")
    r = run("--check-config", "--config", str(ini))
    assert r.returncode == 2
    assert "%s:2: [sidecar] workers: 'many' is not a whole number" % ini in r.stderr
    assert "%s:4: [mediawiki] maxjobs: '0' is out of range (allowed: 1..100000)" % ini in r.stderr
    assert "%s:5: [mediawiki] nope: unknown key" % ini in r.stderr
    # The daemon refuses to start with the same file, same exit code.
    r = run("--config", str(ini))
    assert r.returncode == 2 and "not starting" in r.stderr


def test_missing_config_file():
    r = run("--config", "/nonexistent/jobdrainer.ini")
    assert r.returncode == 2
    assert "/nonexistent/jobdrainer.ini: cannot open: No such file or directory" in r.stderr
