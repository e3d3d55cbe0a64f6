"""The documentation stays short where it should and current where it is generated.

- docs/settings.md is exactly the settings reference rendered from the schema;
- README.md is at most 300 lines and shows the two commands, `make serve` and `make test`;
- every link to a docs/ page (and to a heading in it) from README.md and from docs/*.md exists;
- measured figures are written where they were recorded, with their date and command (the bench
  tables in docs/benchmarks.md, and the pages that report their own measurements); every other
  page links them, so a new run cannot leave a stale copy behind.
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 300
REGENERATE = ".venv/bin/python -m params.reference > docs/settings.md"

# Pages that record measurements (each table or figure with its date and command); settings.md
# is generated. Every other page states no figure in its prose and links these instead.
RESULT_PAGES = {"benchmarks.md", "recognition.md", "models.md", "settings.md"}
# A decimal number standing alone (0.975, 2.2, .5; not a version: 2.6.0, ==0.1.3, Apache-2.0), or
# any number with a unit of speed, time or memory (371 img/s, 12 ms, 7 MB).
FIGURE = re.compile(r"(?<![\w.=~<>-])\d*\.\d+(?![\w.])|\b\d+(?:\.\d+)?\s?(?:img/s|ms|MB|GB)\b")

# [text](target) where target is a relative path to a markdown file, with an optional #anchor
LINK = re.compile(r"\[[^\]]*\]\((?!https?://|mailto:)([^)#\s]*\.md)?(#[^)\s]*)?\)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for match in LINK.finditer(text):
        target, anchor = match.group(1), match.group(2)
        if target is None and anchor is None:
            continue
        yield (path.parent / target).resolve() if target else path, anchor


def test_settings_reference_is_generated_from_the_schema():
    from params.reference import render_markdown

    written = (DOCS / "settings.md").read_text(encoding="utf-8")
    assert written == render_markdown(), (
        f"docs/settings.md differs from the schema's settings reference; regenerate it: {REGENERATE}")


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move details into a page under docs/")


@pytest.mark.parametrize("command", ["make serve", "make test"])
def test_readme_shows_the_two_commands(command):
    assert command in README.read_text(encoding="utf-8"), f"README.md does not show `{command}`"


def test_readme_links_docs_pages_that_exist():
    targets = {target for target, _ in links(README)}
    docs_targets = {t for t in targets if DOCS in t.parents}
    assert docs_targets, "README.md links no page under docs/"
    missing = sorted(str(t.relative_to(REPO)) for t in docs_targets if not t.is_file())
    assert not missing, f"README.md links docs pages that do not exist: {missing}"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_links_between_pages_resolve(page):
    broken = []
    for target, anchor in links(page):
        if target.suffix != ".md":
            continue
        if not target.is_file():
            broken.append(f"{target.relative_to(REPO)} (no such page)")
        elif anchor and anchor[1:] not in anchors(target):
            broken.append(f"{target.relative_to(REPO)}{anchor} (no such heading)")
    assert not broken, f"{page.relative_to(REPO)} links to: {broken}"


def prose(path):
    """The page without code: fenced blocks and `inline code` (versions, settings, examples)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", [README, *sorted(p for p in DOCS.glob("*.md") if p.name not in RESULT_PAGES)],
                         ids=lambda p: p.name)
def test_figures_are_written_only_where_they_were_measured(page):
    figures = [f"line {number}: {FIGURE.findall(line)}"
               for number, line in enumerate(prose(page).splitlines(), 1) if FIGURE.search(line)]
    assert not figures, (
        f"{page.relative_to(REPO)} states figures in its prose: {figures}; a copy goes stale when the bench "
        f"runs again: link the table that records them (docs/benchmarks.md, or {sorted(RESULT_PAGES)})")
