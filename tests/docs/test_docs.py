"""The documentation against the program and against itself.

- The synopsis in README.md and docs/operations.md, `jobdrainer --help` and the man
  page's SYNOPSIS list the same commands with the same options, and the three name the
  same short/long option pairs.
- Every relative link (and #anchor) in the README, docs/, tests/README.md and
  chart-patch/README.md points to an existing file and heading.
- Every metric the sidecar's source names is in docs/metrics.md; the source layout in
  docs/design.md names every sidecar/*.c.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/docs
(uses $JOBDRAINER, else build/jobdrainer, for --help; `make integration` runs it.)
"""
import os
import pathlib
import re
import shlex
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOBDRAINER = pathlib.Path(os.environ.get("JOBDRAINER", ROOT / "build" / "jobdrainer"))
MAN_PAGE = ROOT / "conf" / "jobdrainer.8"
SYNOPSIS_MARKER = "<!-- synopsis:"
SYNOPSIS_DOCS = [ROOT / "README.md", ROOT / "docs" / "operations.md"]
LINKED_DOCS = sorted([ROOT / "README.md", ROOT / "tests" / "README.md",
                      ROOT / "chart-patch" / "README.md"]
                     + list((ROOT / "docs").glob("*.md")))


# --------------------------------------------------------------------------- synopsis

def normalize(line):
    """A synopsis line as tokens: brackets, parentheses and bars stand alone."""
    return tuple(re.sub(r"([\[\]()|])", r" \1 ", line).split())


def help_text():
    if not JOBDRAINER.exists():
        pytest.skip(f"{JOBDRAINER} is not built: run make (or set JOBDRAINER)")
    r = subprocess.run([str(JOBDRAINER), "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def help_synopsis(text):
    """The usage block: from 'usage:' to the first blank line; a line that does not start
    with 'jobdrainer' continues the one before."""
    lines = []
    for raw in text.split("\n\n", 1)[0].splitlines():
        line = raw.strip()
        if line.startswith("usage:"):
            line = line[len("usage:"):].strip()
        if line.startswith("jobdrainer") or not lines:
            lines.append(line)
        else:
            lines[-1] += " " + line
    return [normalize(line) for line in lines]


def troff_text(lines):
    """Plain text of man page source lines: font macros' arguments joined as troff
    alternates fonts (without spaces), .br ends a line, escapes dropped."""
    out, cur = [], []
    for line in lines:
        line = re.sub(r"\\f[BIRP]", "", line.replace("\\-", "-"))
        if line.startswith('.\\"'):
            continue
        if line.strip() == ".br":
            out.append(" ".join(cur))
            cur = []
            continue
        m = re.match(r"\.(B|I|R|BR|RB|IR|RI|BI|IB)\s+(.*)", line)
        if m:
            args = shlex.split(m.group(2))
            cur.append(" ".join(args) if m.group(1) in ("B", "I", "R") else "".join(args))
        elif line.startswith("."):
            if cur:
                out.append(" ".join(cur))
            cur = []
        else:
            cur.append(line)
    if cur:
        out.append(" ".join(cur))
    return out


def man_section(name):
    text = MAN_PAGE.read_text().splitlines()
    start = text.index(f".SH {name}") + 1
    end = next((i for i in range(start, len(text)) if text[i].startswith(".SH ")), len(text))
    return text[start:end]


def man_synopsis():
    return [normalize(line) for line in troff_text(man_section("SYNOPSIS")) if line.strip()]


def doc_synopsis(path):
    """The fenced block right after the '<!-- synopsis: ... -->' marker."""
    lines = path.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith(SYNOPSIS_MARKER)]
    assert len(marks) == 1, f"{path.name}: expected one synopsis marker, found {len(marks)}"
    i = marks[0] + 1
    assert lines[i].startswith("```"), f"{path.name}: no code block after the marker"
    end = lines.index("```", i + 1)
    return [normalize(line) for line in lines[i + 1:end] if line.strip()]


def show(synopsis):
    return "\n".join(" ".join(t) for t in synopsis)


def test_man_page_synopsis_is_readable():
    syn = man_synopsis()
    assert len(syn) >= 4 and all(t[0] == "jobdrainer" for t in syn), show(syn)


@pytest.mark.parametrize("doc", SYNOPSIS_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_synopsis_equals_the_man_page(doc):
    assert show(doc_synopsis(doc)) == show(man_synopsis())


@pytest.mark.parametrize("doc", SYNOPSIS_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_synopsis_equals_help(doc):
    assert show(doc_synopsis(doc)) == show(help_synopsis(help_text()))


def test_man_page_synopsis_equals_help():
    assert show(man_synopsis()) == show(help_synopsis(help_text()))


def option_pairs(text):
    return set(re.findall(r"(?<![\w-])(-[A-Za-z]), (--[a-z][a-z-]*)", text))


def test_short_options_agree():
    """-c/--config, -V/--version, -h/--help: the same pairs in --help, the man page's
    OPTIONS and docs/operations.md."""
    from_help = option_pairs(help_text())
    assert from_help, "no '-x, --long' pairs in --help"
    from_man = option_pairs("\n".join(troff_text(man_section("OPTIONS"))))
    from_ops = option_pairs((ROOT / "docs" / "operations.md").read_text())
    assert from_man == from_help
    assert from_ops == from_help


def test_every_long_option_of_help_is_in_the_man_page():
    man = "\n".join(troff_text(MAN_PAGE.read_text().splitlines()))
    long_help = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text()))
    long_man = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", man))
    assert long_help == long_man


# --------------------------------------------------------------------------- links

def strip_code(text):
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slugs(path):
    """GitHub's heading anchors of a Markdown file."""
    seen, out = {}, set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path):
    for m in re.finditer(r"\]\(([^)\s]+)\)", strip_code(path.read_text())):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue
        yield target


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in slugs(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_link_checker_sees_links():
    assert "docs/operations.md" in set(links(ROOT / "README.md"))
    assert "reading-the-logs" in slugs(ROOT / "docs" / "operations.md")


# --------------------------------------------------------------------------- source

def test_every_metric_is_documented():
    source = "".join(p.read_text() for p in sorted((ROOT / "sidecar").glob("*.[ch]")))
    names = set(re.findall(r'"(jobdrainer_[a-z_]+)', source))
    assert len(names) > 10, names
    documented = (ROOT / "docs" / "metrics.md").read_text()
    missing = sorted(n for n in names if f"`{n}" not in documented)
    assert not missing, "not in docs/metrics.md: " + ", ".join(missing)


def test_source_layout_names_every_file():
    text = (ROOT / "docs" / "design.md").read_text()
    layout = text.split("## Source layout", 1)[1].split("\n## ", 1)[0]
    missing = sorted(p.name for p in (ROOT / "sidecar").glob("*.c")
                     if f"`{p.name}`" not in layout)
    assert not missing, "not in docs/design.md's source layout: " + ", ".join(missing)
