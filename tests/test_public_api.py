"""Every entry point docs/api.md lists imports, and is the object its implementation column names.

The table is parsed from the document, so the document and this test cannot drift: a row added there is
checked here, a path that stops working (a module moved without its re-export) fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|\s*`(?P<path>ctvlp[\w.]*)`\s*\|\s*`(?P<impl>ctvlp[\w.]*)`\s*\|\s*(?P<why>[^|].*?)\s*\|\s*$")


def api_rows() -> list[tuple[str, str, str]]:
    text = (REPO / "docs" / "api.md").read_text()
    return [(m["path"], m["impl"], m["why"]) for m in map(ROW.match, text.splitlines()) if m]


def resolve(path: str):
    """The object a script gets from ``from <module> import <name>`` (or ``import <module>``) for ``path``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as err:
            if err.name != ".".join(parts[:cut]) and not ".".join(parts[:cut]).startswith(f"{err.name}."):
                raise  # the module exists but one of its own imports is missing: a real failure
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(path)


ROWS = api_rows()


def test_the_document_lists_what_the_issue_requires():
    paths = {path for path, _, _ in ROWS}
    required = {"ctvlp.io.dicom.read_series", "ctvlp.preprocess.transform.preprocess", "ctvlp.text.mining.find_references",
                "ctvlp.text.labels.extract_labels", "ctvlp.models.spectre.load_component",
                "ctvlp.models.text_encoder.TextEncoder", "ctvlp.losses"}
    assert required <= paths, sorted(required - paths)
    assert len(paths) == len(ROWS), "a path is listed twice"
    assert all(len(why.split()) >= 4 for _, _, why in ROWS), "every row says why a script imports it"


def test_the_console_script_is_listed():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    paths = {path for path, _, _ in ROWS}
    for target in scripts.values():
        assert target.replace(":", ".") in paths, target


@pytest.mark.parametrize(("path", "impl"), [(p, i) for p, i, _ in ROWS], ids=[p for p, _, _ in ROWS])
def test_each_listed_path_resolves_to_its_implementation(path, impl):
    obj = resolve(path)
    assert obj is resolve(impl), f"{path} is not {impl}"
    if isinstance(obj, types.ModuleType):
        assert obj.__name__ == impl
    elif inspect.isclass(obj) or inspect.isfunction(obj):
        assert f"{obj.__module__}.{obj.__qualname__}" == impl, f"{impl} is defined in {obj.__module__}"
    else:  # a constant: the implementation module holds it
        module, _, name = impl.rpartition(".")
        assert name in vars(importlib.import_module(module)), impl
