"""Docs that run (issue 23, item 7): every `snakemake`, `ctvlp` and `make` command of README.md, REPRODUCE.md,
docs/*.md and config/README.md, taken from the docs' code (inline code and code blocks), is checked:

- ``snakemake``: targets come before ``--configfile`` (which takes several values and would read a target after it
  as one more config file); every option is one of Snakemake's; every profile and config file exists (or is one
  of the documented stand-ins, ``PLACEHOLDER_FILES``). Slow test: each distinct command runs as a dry run in a fresh
  folder (the paper preset with the empty data roots of tests/paper_roots.py, the demo config otherwise; the
  cluster options ``--profile``/``--sdm``/``--cores`` are replaced by ``--cores 1``), and the cheap ones for real
  (``--lint``, ``--list-changes``). ``--report`` needs a finished run: only its options are checked here (the
  demo's report is made by ``make demo``).
- ``ctvlp``: the subcommand exists and every ``--option`` is one of its own (a ``--help``-level check: embed,
  classify, localize and import-weights need a trained run or released weights); ``ctvlp mine`` runs for real.
- ``make``: every target exists in the Makefile (none is run: they install, train or build images).

Config keys named in the docs (`train.lr`, ...) must exist in the schema, and the runs the docs name
(`results/runs/<run>/`) must be rows of an ablation table (REPRODUCE.md: of the paper preset's).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, run_snakemake, write_config
from paper_roots import fake_paper_roots

DOCS = [REPO / "README.md", REPO / "REPRODUCE.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("snakemake", "ctvlp", "make")
COMMAND = re.compile(rf"^(?:\$\s+)?((?:{'|'.join(PROGRAMS)})(?:\s.*)?)$")
# Files the docs name as examples of the user's own: what a dry run reads instead.
PLACEHOLDER_FILES = {"config/site.yaml": "config/paper.yaml", "override.yaml": None, "change.yaml": None}
# Options whose value is a word, not a target (so the word after them is not a target).
VALUED = {"--profile", "--sdm", "--cores", "-c", "--workflow-profile", "--report", "--forcerun", "-R",
          "--list-changes", "--lc", "-s", "--snakefile", "-d", "--directory", "-j", "--jobs", "--until",
          "--config", "-C"}


def _commands_of(text: str) -> list[tuple[int, str]]:
    """(line, command) of every program call in the text's code: inline code spans and fenced blocks."""
    found, fenced, pending = [], False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            line = pending + line.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            m = COMMAND.match(line)
            if m:
                found.append((n, re.split(r"\s+#\s", m.group(1))[0].strip()))
            continue
        for span in re.findall(r"`([^`\n]+)`", line):
            m = COMMAND.match(span.strip())
            if m and " " in m.group(1):  # `ctvlp` alone is the package's name
                found.append((n, m.group(1).strip()))
    return found


# What a doc's `...` in a snakemake command stands for (REPRODUCE.md says so below its table).
ELLIPSIS = {"REPRODUCE.md": "--profile slurm --configfile config/paper.yaml"}


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) of every documented command; a snakemake command's `...` replaced by what its doc says."""
    out = []
    for doc in DOCS:
        for n, cmd in _commands_of(doc.read_text()):
            if cmd.startswith("snakemake") and doc.name in ELLIPSIS and "..." in cmd:
                cmd = cmd.replace("...", ELLIPSIS[doc.name])
            out.append((f"{doc.relative_to(REPO)}:{n}", cmd))
    return out


def _words(command: str) -> list[str]:
    words = shlex.split(command.replace("...", ""))
    out = []
    for word in words:  # brace expansion, as the shell does: container-{data,gpu}
        m = re.fullmatch(r"(.*)\{([^}]*,[^}]*)\}(.*)", word)
        out += [m.group(1) + part + m.group(3) for part in m.group(2).split(",")] if m else [word]
    return out


def values_after_configfile(command: str) -> list[str]:
    words = _words(command)
    if "--configfile" not in words:
        return []
    values = []
    for word in words[words.index("--configfile") + 1:]:
        if word.startswith("-"):
            break
        values.append(word)
    return values


def snakemake_parts(command: str) -> tuple[list[str], list[str], list[str]]:
    """(options, config files, targets) of a documented snakemake command."""
    words = _words(command)[1:]
    options, configs, targets = [], values_after_configfile(command), []
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            options.append(word)
            if word == "--configfile":
                skip = False
            elif word in VALUED:
                skip = True
            continue
        if word in configs:
            continue
        targets.append(word)
    return options, configs, targets


# ---- snakemake ---------------------------------------------------------------------------------------------------
def snakemake_options() -> set[str]:
    out = subprocess.run([str(SNAKEMAKE), "--help"], capture_output=True, text=True, timeout=120).stdout
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", out))


def test_no_documented_target_is_read_as_a_config_file():
    commands = documented_commands()
    assert len([c for _, c in commands if c.startswith("snakemake")]) > 10  # the parser still finds them
    wrong = [(where, cmd) for where, cmd in commands if cmd.startswith("snakemake ")
             and any(not v.endswith((".yaml", ".yml")) for v in values_after_configfile(cmd))]
    assert not wrong, wrong


def test_the_check_catches_a_target_after_configfile():
    assert values_after_configfile("snakemake --profile slurm --configfile config/paper.yaml results/a.json") == [
        "config/paper.yaml", "results/a.json"]
    assert snakemake_parts("snakemake results/a.json --profile slurm --configfile config/paper.yaml") == (
        ["--profile", "--configfile"], ["config/paper.yaml"], ["results/a.json"])
    assert _commands_of("x `make test PYTEST_ARGS=\"-m 'not slow'\"` y\n```bash\nsnakemake --cores all  # demo\n```\n"
                        "`ctvlp` and `make`") == [(1, "make test PYTEST_ARGS=\"-m 'not slow'\""),
                                                  (3, "snakemake --cores all")]


def test_snakemake_options_profiles_and_config_files_exist():
    known = snakemake_options()
    wrong = []
    for where, cmd in documented_commands():
        if not cmd.startswith("snakemake"):
            continue
        options, configs, _ = snakemake_parts(cmd)
        wrong += [(where, f"unknown option {o}") for o in options if o not in known]
        wrong += [(where, f"no config file {c}") for c in configs
                  if c not in PLACEHOLDER_FILES and not (REPO / c).is_file()]
        words = _words(cmd)
        for flag in ("--profile", "--workflow-profile"):
            if flag in words:
                name = words[words.index(flag) + 1]
                if not ((REPO / "profiles" / Path(name).name).is_dir() or (REPO / name).is_dir()):
                    wrong.append((where, f"no profile {name}"))
    assert not wrong, wrong


def _dry_run_args(cmd: str, work: Path) -> tuple[list[str], str]:
    """The documented command as a local dry run in ``work`` (or for real where it only reads): args, mode."""
    options, configs, targets = snakemake_parts(cmd)
    words = _words(cmd)
    args, mode = [], "dry run"
    for opt in ("--forcerun", "-R", "--list-changes", "--lc"):
        if opt in words:
            args += [opt, words[words.index(opt) + 1]]
    if "--list-changes" in words or "--lc" in words or "--lint" in words:
        mode = "for real (reads only)"
        args += ["--lint"] if "--lint" in words else []
    else:
        args += ["-n"]
    files = []
    for c in configs:
        c = PLACEHOLDER_FILES.get(c, c) if c in PLACEHOLDER_FILES else c
        files.append(str(write_config(work / "placeholder.yaml", {})) if c is None else str(REPO / c))
    if any(Path(f).name == "paper.yaml" for f in files):
        roots = fake_paper_roots(work / "roots")
        files.append(str(write_config(work / "roots.yaml", {**roots, "results": "results", "logs": "logs"})))
    return [*targets, "--cores", "1", *args, *(["--configfile", *files] if files else [])], mode


@pytest.mark.slow  # one dry run per distinct documented command (~10 s each, two at a time)
def test_every_documented_snakemake_command_runs(tmp_path):
    runs: dict[tuple, tuple[str, str, str]] = {}
    for where, cmd in documented_commands():
        if not cmd.startswith("snakemake") or "--report" in cmd:  # --report: needs a finished run (make demo)
            continue
        work = tmp_path / f"cmd{len(runs)}"
        work.mkdir(exist_ok=True)
        args, mode = _dry_run_args(cmd, work)
        key = tuple(a if not a.startswith(str(work)) else a[len(str(work)):] for a in args)
        runs.setdefault(key, (where, cmd, mode))  # --profile/--sdm variants of one command: one dry run

    def run(numbered):
        number, (where, cmd, _) = numbered
        work = tmp_path / f"run{number}"
        work.mkdir()
        args, _ = _dry_run_args(cmd, work)
        proc = run_snakemake(work, *args, timeout=900)
        return None if proc.returncode == 0 else (where, cmd, (proc.stdout + proc.stderr)[-1500:])

    with ThreadPoolExecutor(2) as pool:
        failed = [f for f in pool.map(run, enumerate(runs.values())) if f]
    assert len(runs) >= 8, runs
    assert not failed, failed


# ---- ctvlp -------------------------------------------------------------------------------------------------------
def test_every_documented_ctvlp_command_names_a_subcommand_and_its_options(tmp_path):
    from ctvlp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse's subparsers action
    wrong, checked = [], 0
    for where, cmd in documented_commands():
        if not cmd.startswith("ctvlp "):
            continue
        words = _words(cmd)
        names = [w for w in words[1:] if w != "/" and not w.startswith(("-", "["))]
        # "ctvlp embed / classify / localize / mine": several subcommands in one span
        commands = names if "/" in words else names[:1]
        for name in commands:
            if name not in sub.choices:
                wrong.append((where, f"no subcommand {name}"))
                continue
            own = {o for a in sub.choices[name]._actions for o in a.option_strings}
            wrong += [(where, f"{name}: no option {w}") for w in (x.strip("[]") for x in words)
                      if w.startswith("--") and w not in own]
            checked += 1
    assert checked >= 8 and not wrong, wrong
    # `ctvlp mine --report FILE` needs no model: run for real on a report with an image reference
    report = tmp_path / "report.txt"
    report.write_text("Findings: 8 mm nodule in the right upper lobe (series 4, image 38).\n")
    mined = subprocess.run([sys.executable, "-m", "ctvlp.cli", "mine", "--report", str(report), "--json"],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert mined.returncode == 0 and "38" in mined.stdout, (mined.stdout + mined.stderr)[-1000:]
    help_text = subprocess.run([sys.executable, "-m", "ctvlp.cli", "--help"], capture_output=True, text=True,
                               cwd=REPO, timeout=120)
    assert help_text.returncode == 0 and "import-weights" in help_text.stdout, help_text.stderr[-1000:]


# ---- make --------------------------------------------------------------------------------------------------------
def make_targets() -> set[str]:
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z][\w.%{} -]*?)\s*:(?!=)", line)
        if m:
            targets |= set(m.group(1).split())
    return targets


def test_every_documented_make_target_exists():
    targets = make_targets()
    assert {"demo", "test", "install"} <= targets
    wrong, checked = [], 0
    for where, cmd in documented_commands():
        if not cmd.startswith("make "):
            continue
        for word in _words(cmd)[1:]:
            if "=" in word or word.startswith("-"):
                continue
            checked += 1
            if word not in targets and not any(fnmatch.fnmatch(t, word) for t in targets):
                wrong.append((where, word))
    assert checked >= 20 and not wrong, wrong


# ---- config keys and runs ----------------------------------------------------------------------------------------
def _schema_has(schema: dict, path: list[str]) -> bool:
    node = schema
    for i, key in enumerate(path):
        if node.get("$ref"):
            node = _resolve(schema, node["$ref"])
        props = node.get("properties")
        if props is None:  # a free-form value (a mapping of the user's own keys): the rest cannot be checked
            return node.get("additionalProperties", True) is not False or i == len(path)
        if key not in props:
            return isinstance(node.get("additionalProperties"), dict)  # data.<source>: any name
        node = props[key]
    return True


def _resolve(schema: dict, ref: str) -> dict:
    node = schema
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


FILE_EXTENSIONS = {"yaml", "yml", "py", "md", "tsv", "json", "smk", "safetensors", "pt", "pth", "bin", "npz", "npy",
                   "parquet", "csv", "txt", "html", "png", "pdf", "sif", "lock", "xlsx", "nii", "gz", "index", "def"}
KEY = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+)`")


def test_the_config_keys_the_docs_name_exist():
    schema = yaml.safe_load((REPO / "src/ctvlp/resources/config.schema.yaml").read_text())
    sections = set(schema["properties"])
    wrong, checked = [], 0
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for key in KEY.findall(line):
                path = key.split(".")
                if path[0] not in sections or path[-1] in FILE_EXTENSIONS:  # model.safetensors: a file
                    continue
                checked += 1
                if not _schema_has(schema, path):
                    wrong.append((f"{doc.relative_to(REPO)}:{n}", key))
    assert checked > 30 and not wrong, wrong
    assert "grad_accum" not in "".join(d.read_text() for d in DOCS)  # the stale key of issue 23


def _runs(table: str) -> set[str]:
    return {line.split("\t")[0] for line in (REPO / table).read_text().splitlines()[1:]
            if line.strip() and not line.startswith("#")}


def test_the_runs_the_docs_name_are_rows_of_their_preset():
    paper, demo = _runs("config/ablations_paper.tsv"), _runs("config/ablations.tsv")
    wrong = []
    for doc in DOCS:
        text = doc.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            for run in re.findall(r"results/runs/([a-z_0-9]+)/", line):
                allowed = paper if doc.name == "REPRODUCE.md" or "paper.yaml" in line else paper | demo
                if run not in allowed:
                    wrong.append((f"{doc.relative_to(REPO)}:{n}", run))
    assert not wrong, wrong
    assert paper <= demo | {"full"}, "every paper row has its demo counterpart"
    assert list(itertools.islice(sorted(paper), 1))  # the paper table has rows


TOP_DIRS = ("src/", "config/", "workflow/", "tests/", "tools/", "containers/", "envs/", "benchmarks/", "profiles/",
            "docs/", ".test/", ".ci/")


def test_the_files_and_links_the_docs_name_exist():
    """Repository paths in the docs' code (`config/ablations_paper.tsv`) and relative links exist."""
    wrong, checked = [], 0
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for span in re.findall(r"`([^`\n]+)`", line):
                for token in (t.strip("(),;:") for t in span.split()):
                    if token.startswith(TOP_DIRS) and not any(c in token for c in "<>{}*"):
                        checked += 1
                        if not (REPO / token).exists():
                            wrong.append((f"{doc.relative_to(REPO)}:{n}", token))
            for link in re.findall(r"\]\(([^)#]+)", line):
                if not link.startswith(("http://", "https://", "mailto:")):
                    checked += 1
                    if not (doc.parent / link).exists():
                        wrong.append((f"{doc.relative_to(REPO)}:{n}", link))
    assert checked > 50 and not wrong, wrong
