"""The documentation holds its layout: the README stays a front door (<= 300 lines), every relative
link of README.md, docs/*.md and bench/README.md reaches an existing file (and, for a Markdown
file, an existing heading), and no page narrates the project's development history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
# Pages the project speaks through (docs/notes/ holds contributions waiting to be folded in).
PAGES = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Development-history wording: numbered work periods, before/after narration of the code itself.
HISTORY = [
    (re.compile(r"\bsessions?\b[ -]*\d", re.I), "a numbered session"),
    (re.compile(r"\bSession\b"), "'Session'"),
    (re.compile(r"\bthis session\b", re.I), "'this session'"),
    (re.compile(r"\bprevious session\b", re.I), "'previous session'"),
    (re.compile(r"\bearlier sessions\b", re.I), "'earlier sessions'"),
    (re.compile(r"\bbefore this change\b", re.I), "'before this change'"),
    (re.compile(r"\bformerly\b", re.I), "'formerly'"),
]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?) *$", text, re.M)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) for m in LINK.finditer(text)]


def test_pages_exist():
    names = {p.relative_to(REPO).as_posix() for p in PAGES}
    for page in ("README.md", "bench/README.md", "docs/configuration.md", "docs/cluster.md",
                 "docs/real-model.md", "docs/performance.md", "docs/extending.md", "docs/outputs.md"):
        assert page in names, f"{page} is missing"


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    readme = "\n".join(lines)
    for page in PAGES:
        if page.name != "README.md" or page.parent != REPO:
            assert page.relative_to(REPO).as_posix() in readme, f"README.md does not link {page.relative_to(REPO)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    problems = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            problems.append(f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not problems, f"{page.relative_to(REPO)}: broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_development_history(page):
    hits = [f"line {n}: {what}: {line.strip()[:100]}"
            for n, line in enumerate(page.read_text().splitlines(), 1)
            for pattern, what in HISTORY if pattern.search(line)]
    assert not hits, f"{page.relative_to(REPO)} narrates development history:\n" + "\n".join(hits)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The link and history checks can fail: a broken link, a missing heading and a session
    number are each reported."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](missing.md) [b](#nowhere) [c](#title)\nMeasured in session 4.\n")
    assert _links(page) == ["missing.md", "#nowhere", "#title"]
    assert _anchors(page) == {"title"}
    assert any(p.search("Measured in session 4.") for p, _ in HISTORY)
    assert _slug("Per rule, CPU seconds") == "per-rule-cpu-seconds"
    assert _slug("Local runs: the warm interpreter") == "local-runs-the-warm-interpreter"
    assert _slug("1. Edit `slurm/config.yaml`") == "1-edit-slurmconfigyaml"
