"""Every relative link in README.md, ARCHITECTURE.md and docs/*.md leads somewhere: the file exists, and so
does the heading an anchor names (as GitHub spells headings into anchors). Every `docs/NAME.md` a page
mentions, in a link or not, exists too."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "docs").glob("*.md")])
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)", re.M)
DOC_MENTION = re.compile(r"(?<![\w./-])docs/[\w.-]+\.md\b")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:...


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a page's headings give (a repeated one gets -1, -2...), and any explicit id or name."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", page.read_text(), flags=re.M | re.S)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return found


def links(page: Path) -> list[str]:
    prose = _prose(page.read_text())
    return [target for target in INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
            if target and not EXTERNAL.match(target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading gives #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_docs_page_a_page_mentions_exists(page):
    missing = sorted({m for m in DOC_MENTION.findall(page.read_text()) if not (ROOT / m).is_file()})
    assert not missing, f"{page.relative_to(ROOT)} mentions pages that do not exist: {missing}"


def test_the_pages_checked_are_the_readme_the_architecture_and_every_doc():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "ARCHITECTURE.md", "docs/README.md", "docs/cli-reference.md"} <= names


def test_headings_become_anchors_as_on_github():
    assert slug("`indexer status`") == "indexer-status"
    assert slug("Elastic Cloud: cloud_id and an API key") == "elastic-cloud-cloud_id-and-an-api-key"
    assert slug("Oracle and MSSQL: what was and was not run") == "oracle-and-mssql-what-was-and-was-not-run"
    assert slug("`sync --every`: a loop") == "sync---every-a-loop"
    assert slug("[source] (required)") == "source-required"


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#two-words) [gone](c.md) [bad](a.md#three) `[code](x.md)` [web](https://x.org)\n"
                    "```\n[fenced](y.md)\n```\n")
    assert links(page) == ["a.md#two-words", "c.md", "a.md#three"]
    assert anchors(tmp_path / "a.md") == {"title", "two-words"}
