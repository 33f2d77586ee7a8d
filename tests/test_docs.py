"""The documentation: the README stays short and starts with the two commands, every relative link in it
and in ``docs/`` reaches a file of the repository, every page is in the site's navigation, and the site
builds with ``mkdocs build --strict`` (what ``make docs`` runs), in which any warning (a broken link or
anchor, a page missing from the navigation) is an error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 120  # two screens
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def relative_links(text: str) -> list[str]:
    """The targets of the Markdown links in ``text`` that point into the repository (not in code, not a URL,
    not an anchor of the same page), without their anchors."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = (t.split("#", 1)[0] for t in LINK.findall(prose))
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(md: Path) -> list[str]:
    """The relative links of ``md`` that reach no file, or a file outside the repository."""
    bad = []
    for target in relative_links(md.read_text()):
        path = (md.parent / target).resolve()
        if not path.is_relative_to(REPO.resolve()) or not path.exists():
            bad.append(target)
    return bad


def nav_pages(nav: list) -> set[str]:
    """Every page file named in mkdocs.yml's ``nav`` (nested sections included)."""
    found: set[str] = set()
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                found |= nav_pages(value)
            else:
                found.add(value)
    return found


def test_readme_fits_on_two_screens() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md: {n} lines; move detail into docs/ (at most {MAX_README_LINES})"


def test_readme_starts_with_the_two_commands() -> None:
    first_block = FENCE.search(README.read_text())
    assert first_block is not None
    assert "make quickstart" in first_block.group(0) and "make test" in first_block.group(0)


def test_relative_links_reach_files_of_the_repository() -> None:
    bad = {str(md.relative_to(REPO)): broken_links(md) for md in [README, *pages()]}
    assert not {k: v for k, v in bad.items() if v}


def test_link_check_finds_a_broken_and_an_outside_link(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    links = "[a](missing.md) [b](../../../../outside.md) `[c](in-code.md)` [d](https://x.org/y) [e](#top)"
    md.write_text(links)
    assert relative_links(md.read_text()) == ["missing.md", "../../../../outside.md"]
    assert broken_links(md) == ["missing.md", "../../../../outside.md"]


def test_every_docs_page_is_in_the_nav() -> None:
    nav = nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    missing = [p.name for p in pages() if p.name not in nav]
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}"
    assert all((DOCS / name).is_file() for name in nav)


def test_no_reference_to_files_outside_the_repository() -> None:
    for md in [README, *pages()]:
        text = md.read_text()
        assert "../shared" not in text and "/work/" not in text, md.name


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    proc = build(REPO, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "getting-started" / "index.html").is_file()


@pytest.mark.slow
def test_the_strict_build_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(REPO / "mkdocs.yml", project / "mkdocs.yml")
    index = project / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[gone](numbers.md#no-such-heading)\n")
    proc = build(project, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-heading" in proc.stderr
