"""The README's promise: its setup and test commands are exactly what CI runs."""

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
