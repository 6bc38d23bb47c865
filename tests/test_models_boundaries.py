"""The trainer and the evaluation do not import each other; what both need (embedding samples through a
model, the quick dev metrics) lives in ``ctvlp.inference.embedding``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ctvlp"


def imported_modules(package: str) -> dict[str, set[str]]:
    out = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(SRC))] = names
    return out


def test_train_and_evaluate_do_not_import_each_other():
    for package, other in (("train", "ctvlp.evaluate"), ("evaluate", "ctvlp.train")):
        offenders = {f: sorted(n for n in names if n == other or n.startswith(other + "."))
                     for f, names in imported_modules(package).items()}
        assert not {f: n for f, n in offenders.items() if n}, offenders
    assert any("ctvlp.inference.embedding" in names for names in imported_modules("train").values())
    assert any("ctvlp.inference.embedding" in names for names in imported_modules("evaluate").values())
