"""Every ``python -m wavelab.run`` command the docs show composes with the real conf/: a key
renamed or a group option removed breaks the test before it breaks a reader's copy-paste."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers.cli import REPO

from wavelab.core.compose import compose

DOCS = sorted(
    str(path.relative_to(REPO))
    for pattern in ("README.md", "docs/*.md", "experiments/*.md")
    for path in REPO.glob(pattern)
)
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
RUN = "python -m wavelab.run"
PINNED = re.compile(r"^taskset -c \S+ ")


def run_commands(doc: str) -> list[str]:
    """The doc's ``python -m wavelab.run`` commands, continuation lines joined, comments and
    ``taskset`` cut; a command that reads shell variables is left out (it has no fixed text)."""
    commands = []
    for block in BASH_BLOCK.findall((REPO / doc).read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = PINNED.sub("", line.split(" #")[0].strip())
            if line.startswith(RUN) and "$" not in line:
                commands.append(line)
    return commands


def first_choice(value: str) -> str:
    """A sweep's ``a,b,c`` as its first value; a list or dict value stays whole."""
    return value if value[:1] in "[{'\"" else value.split(",")[0]


def overrides_of(command: str) -> list[str]:
    """What Hydra composes for one job of the command: placeholders (``<run>``) and the run's own
    keys (``resume_dir``, which names a run dir, not a config) are left out."""
    overrides = []
    for arg in shlex.split(command)[len(RUN.split()) :]:
        if arg == "-m" or "<" in arg or arg.startswith("resume_dir="):
            continue
        key, _, value = arg.partition("=")
        overrides.append(f"{key}={first_choice(value)}")
    return overrides


COMMANDS = [(doc, command) for doc in DOCS for command in run_commands(doc)]


def test_the_docs_show_run_commands():
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_a_run_command_of_the_docs_composes(doc, command, tmp_path):
    cfg = compose(overrides_of(command), output_dir=tmp_path)
    assert cfg.model is not None, f"{doc}: {command}"
