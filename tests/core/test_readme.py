"""The docs' promises: the README's setup and test commands are exactly what CI runs, and every
file or folder of the repository that the docs name is there."""

from __future__ import annotations

import re

from helpers.cli import REPO


def ci_command(name: str) -> str:
    match = re.search(rf"^{name}='(.+)'$", (REPO / ".ci/run").read_text(), re.MULTILINE)
    assert match, f"{name}= not found in .ci/run"
    return match.group(1)


def test_readme_setup_and_test_commands_are_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert ci_command("SETUP") in readme
    assert f"\n{ci_command('TEST')}\n" in readme


DOCS = sorted(
    str(path.relative_to(REPO))
    for pattern in ("*.md", "docs/*.md", "experiments/*.md")
    for path in REPO.glob(pattern)
)
# A repository path in prose: under one of its top-level folders, naming a file (an extension)
# or a folder (a trailing slash); templates such as conf/<group>/ do not match.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:wavelab|tests|conf|scripts|experiments|docs|\.ci)/[\w./-]*(?:\.\w+|/))"
    r"(?![\w<*{])"
)
# A markdown link or image to a file of the repository, relative to the doc that holds it.
RELATIVE_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s#]+)(?:#[^)]*)?\)")
MAX_LINE = 100


def test_the_docs_are_the_ones_a_reader_finds():
    assert {"README.md", "CONTRIBUTING.md", "experiments/README.md"} <= set(DOCS)
    assert any(doc.startswith("docs/") for doc in DOCS)


def test_every_repository_path_the_docs_name_exists():
    missing = [
        f"{doc}: {path}"
        for doc in DOCS
        for path in sorted(set(REPO_PATH.findall((REPO / doc).read_text())))
        if not (REPO / path).exists()
    ]
    assert not missing, missing


def test_every_relative_link_of_the_docs_resolves():
    broken = [
        f"{doc}: {link}"
        for doc in DOCS
        for link in sorted(set(RELATIVE_LINK.findall((REPO / doc).read_text())))
        if not ((REPO / doc).parent / link).exists()
    ]
    assert not broken, broken


def test_no_line_of_the_docs_is_longer_than_a_reader_sees():
    long_lines = [
        f"{doc}:{number}: {len(line)} characters"
        for doc in DOCS
        for number, line in enumerate((REPO / doc).read_text().splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    assert not long_lines, long_lines
