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


DOCS = ("README.md", "CONTRIBUTING.md", "experiments/README.md")
# A repository path in prose: under one of its top-level folders, naming a file (an extension)
# or a folder (a trailing slash); templates such as conf/<group>/ do not match.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:wavelab|tests|conf|scripts|experiments|\.ci)/[\w./-]*(?:\.\w+|/))(?![\w<*{])"
)


def test_every_repository_path_the_docs_name_exists():
    missing = [
        f"{doc}: {path}"
        for doc in DOCS
        for path in sorted(set(REPO_PATH.findall((REPO / doc).read_text())))
        if not (REPO / path).exists()
    ]
    assert not missing, missing
