"""Documented Snakemake commands put their targets where Snakemake reads them as targets.

``--configfile`` takes several values, so ``snakemake --configfile config/paper.yaml results/x.json`` reads the
target as a second config file and stops with FileNotFoundError; the docs write targets first.
"""

from __future__ import annotations

import re
import shlex

from conftest import REPO

DOCS = [REPO / "README.md", REPO / "REPRODUCE.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"snakemake [^`\n|#]*")


def documented_commands() -> list[tuple[str, str]]:
    return [(f"{doc.name}:{n}", m.group(0).strip()) for doc in DOCS
            for n, line in enumerate(doc.read_text().splitlines(), 1) for m in COMMAND.finditer(line)]


def values_after_configfile(command: str) -> list[str]:
    words = shlex.split(command.replace("...", ""))
    if "--configfile" not in words:
        return []
    values = []
    for word in words[words.index("--configfile") + 1:]:
        if word.startswith("-"):
            break
        values.append(word)
    return values


def test_no_documented_target_is_read_as_a_config_file():
    commands = documented_commands()
    assert len(commands) > 10  # the parser still finds the docs' commands
    wrong = [(where, cmd) for where, cmd in commands
             if any(not v.endswith((".yaml", ".yml")) for v in values_after_configfile(cmd))]
    assert not wrong, wrong


def test_the_check_catches_a_target_after_configfile():
    assert values_after_configfile("snakemake --profile slurm --configfile config/paper.yaml results/a.json") == [
        "config/paper.yaml", "results/a.json"]
