"""Every cross-reference in the docs leads somewhere: each relative Markdown link of
README.md, docs/*.md and the packages' READMEs names a file that exists and, with a
#fragment, a heading of that file; each alert's runbook_url names a runbook heading; and
each citation of a page's section in code, configuration or docs (`docs/contract.md,
"Storms"`) names a heading of that page.

Anchors follow GitHub's rule for headings: lower case, every character that is not a
letter, digit, space, '-' or '_' dropped, spaces turned into '-', and a repeated heading
suffixed -1, -2, ... in order."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ROOT.glob("*/README.md")})

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) or [text](target "title"); the text may run over a line break.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
# docs/contract.md, "Storms" / README, "Which layout" / docs/contract.md's "Receiver events"
CITATION = re.compile(r"\b((?:[\w-]+/)*[\w-]+\.md|README)(?:'s)?,?\s+\"([^\"\n]+)\"")
# A comment's line break and marker ("\n  # ") read as one space.
WRAP = re.compile(r"[ \t]*\n[ \t]*(?:#|//)?[ \t]*")
SOURCES = (".py", ".yml", ".yaml", ".md", ".toml", ".json", ".cfg")
NOT_SOURCES = {"artifacts", "fixtures", "mutants", "__pycache__"}


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> list[str]:
    """The targets of the Markdown links of a text, outside code blocks and code spans."""
    return LINK.findall(CODE_SPAN.sub("", FENCE.sub("", text)))


def broken(target: str, page: Path, root: Path = ROOT) -> str | None:
    """Why a relative link (or runbook_url) from `page` leads nowhere; None if it resolves.
    A link with a scheme (https:, mailto:) is not this test's business."""
    if SCHEME.match(target):
        return None
    path, _, fragment = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    shown = dest.relative_to(root) if dest.is_relative_to(root) else dest
    if not dest.exists():
        return f"{target}: no file {shown}"
    if fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
        return f"{target}: no heading #{fragment} in {shown}"
    return None


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    return [f"{page.relative_to(root)}: {why}" for target in links(page.read_text())
            if (why := broken(target, page, root)) is not None]


def sources(root: Path = ROOT) -> list[Path]:
    """The project's code, configuration and docs: what may cite a page's section."""
    return sorted(p for p in root.rglob("*") if p.suffix in SOURCES and p.is_file()
                  and not any(part.startswith(".") or part in NOT_SOURCES
                              or part.endswith(".egg-info")
                              for part in p.relative_to(root).parts[:-1]))


def headings(text: str) -> list[str]:
    """The headings of a Markdown text as read: lower case, without code marks."""
    return [re.sub(r"[`*]", "", h).lower() for h in HEADING.findall(FENCE.sub("", text))]


def broken_citations(source: Path, root: Path = ROOT) -> list[str]:
    """Citations of a page's section in `source` that name no heading of the page. A page
    is found beside the citing file, else from the root; a bare README is the root's."""
    problems = []
    for page, section in CITATION.findall(WRAP.sub(" ", source.read_text())):
        where = [root / "README.md"] if page == "README" else [source.parent / page, root / page]
        found = next((p for p in where if p.is_file()), None)
        shown = f"{source.relative_to(root)}: {page}, \"{section}\""
        if found is None:
            problems.append(f"{shown}: no such page")
        elif not any(section.lower() in heading for heading in headings(found.read_text())):
            problems.append(f"{shown}: no such heading in {found.relative_to(root)}")
    return problems


def runbook_urls() -> set[str]:
    return {rule["annotations"]["runbook_url"]
            for path in (ROOT / "prometheus" / "rules").glob("*.yml")
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_the_check_reads_every_page_that_links_to_others():
    names = {str(page.relative_to(ROOT)) for page in PAGES}
    assert {"README.md", "docs/contract.md", "docs/runbook.md", "docs/operating.md",
            "receiver/README.md", "swarmguard_cli/README.md"} <= names, names


def test_every_relative_link_of_the_docs_resolves_to_a_file_and_heading():
    # Catches a link to a page that moved, or to a section whose heading was renamed.
    problems = [problem for page in PAGES for problem in broken_links(page)]
    assert not problems, "\n".join(problems)


def test_every_section_the_code_and_docs_cite_is_a_heading_of_its_page():
    # Catches a comment or page that sends its reader to a section that was renamed,
    # moved to another page, or never written (README, "Density").
    checked = sources()
    assert {ROOT / "stack.yml", ROOT / "receiver" / "config.py", ROOT / "docs" / "contract.md",
            ROOT / "prometheus" / "rules" / "swarmguard.yml"} <= set(checked)
    problems = [problem for source in checked if source != Path(__file__).resolve()
                for problem in broken_citations(source)]  # this file's examples cite amiss
    assert not problems, "\n".join(problems)


def test_every_runbook_url_of_the_rules_leads_to_its_runbook_section():
    # Catches an alert whose runbook link leads nowhere (the URL is relative to the
    # repository's root, where Alertmanager's users find the docs).
    urls = runbook_urls()
    # three scenarios, SwarmGuardBlind, SwarmGuardCannotAct, SwarmGuardMoveFutile,
    # SwarmGuardUnsafeToMove
    assert len(urls) == 7, urls
    problems = [why for url in sorted(urls) if (why := broken(url, ROOT / "README.md"))]
    assert not problems, "\n".join(problems)
    assert {url.partition("#")[0] for url in urls} == {"docs/runbook.md"}


def test_the_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    # Catches a link check that passes whatever the links say.
    tmp_path = tmp_path.resolve()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Other\n\n## Which layout (`make x`)\n\n## Which layout (`make x`)\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Page\n\n## Two words\n\n"
        "[ok](docs/other.md#which-layout-make-x) [ok too](docs/other.md#which-layout-make-x-1)\n"
        "[here](#two-words) [web](https://example.org/nowhere.md) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[gone](docs/gone.md) [a heading\nthat is not](docs/other.md#which-layout-2)\n"
        "[nor here](#three-words)\n")
    assert broken_links(page, tmp_path) == [
        "README.md: docs/gone.md: no file docs/gone.md",
        "README.md: docs/other.md#which-layout-2: no heading #which-layout-2 in docs/other.md",
        "README.md: #three-words: no heading #three-words in README.md",
    ]


def test_the_check_finds_a_section_its_page_does_not_have(tmp_path):
    # Catches a citation check that passes whatever the citations say.
    tmp_path = tmp_path.resolve()
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Project\n\n## Which layout\n")
    (tmp_path / "docs" / "runbook.md").write_text("# Runbook\n\n## 6. Opt a service in\n")
    source = tmp_path / "stack.yml"
    source.write_text(
        '# fine: (README, "Which layout"), docs/runbook.md, "Opt a service in"\n'
        '# (README, "Density"), docs/runbook.md, "Opt a service\n'
        '#   out"; (docs/gone.md, "Storms")\n')
    assert broken_citations(source, tmp_path) == [
        'stack.yml: README, "Density": no such heading in README.md',
        'stack.yml: docs/runbook.md, "Opt a service out": no such heading in docs/runbook.md',
        'stack.yml: docs/gone.md, "Storms": no such page',
    ]
