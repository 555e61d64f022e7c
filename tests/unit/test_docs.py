"""README.md is a front page within its size limit, and every relative link of the documentation resolves.

Links are checked in README.md and docs/*.md: ``[text](path)``, ``[text](path#anchor)`` and
``[text](#anchor)`` must name an existing file or folder (relative to the page), and an anchor must be a
heading of the target page under GitHub's slug rules. Code blocks and inline code are not links. No
subprocess, no network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 16 * 1024  # bytes

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (links, code and emphasis marks dropped),
    lower-cased, every character but letters, digits, ``_``, ``-`` and spaces removed, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page, with GitHub's -1, -2, ... suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(page: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(page.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def test_readme_is_a_front_page_within_16_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move detail to docs/"


def test_slug_follows_githubs_rules() -> None:
    assert slug("Many classes: the evaluation metric at iNaturalist's 8,142 classes") == (
        "many-classes-the-evaluation-metric-at-inaturalists-8142-classes"
    )
    assert slug("KPS-GA and VS + TLA + ADRW") == "kps-ga-and-vs--tla--adrw"
    assert slug("`dataset`: what is read") == "dataset-what-is-read"
    assert slug("1. One machine, 1–8 GPUs") == "1-one-machine-18-gpus"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor:
            if dest.suffix != ".md" or dest.is_dir():
                broken.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_listed_in_the_index_and_the_readme() -> None:
    index = {Path(t.partition("#")[0]).name for t in links(DOCS / "index.md")}
    readme = {Path(t.partition("#")[0]).name for t in links(README) if t.startswith("docs/")}
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "index.md":
            continue
        assert page.name in index, f"docs/index.md does not list {page.name}"
        assert page.name in readme, f"README.md's documentation index does not list docs/{page.name}"
