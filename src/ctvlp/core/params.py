"""The config a workflow rule reads, as one canonical value for the rule's ``params:``.

Snakemake reruns a job when its params differ from those recorded when it ran (``.snakemake/metadata``):
it compares the ``repr`` of every param value, names left out. A dict's repr follows its insertion order,
so the same config saved with its keys in another order would look changed; every mapping here is rebuilt
with its keys sorted, at every depth, and tuples become lists (YAML gives lists). A rule passes only the
keys it reads (:func:`select`), so a changed value reruns the rules that read it and nothing else.

Never select ``privacy``: params are written to Snakemake's metadata, and the salt must not be.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Iterable

PRIVATE = ("privacy",)  # never a param: the salt would be written to .snakemake/metadata


def canonical(value: Any) -> Any:
    """The same value with every mapping's keys sorted (recursively), tuples as lists, sets sorted."""
    if isinstance(value, Mapping):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    return value


def select(config: Mapping, keys: Iterable[str], missing_ok: bool = False) -> dict:
    """``{section: {key: value}}`` holding only the dotted ``keys`` of ``config`` (a section whole, or one key
    of it), nested as in the config and canonical. A key the config lacks is a KeyError naming it, or (with
    ``missing_ok``, for optional keys the reader defaults with ``.get``) left out."""
    out: dict = {}
    for dotted in keys:
        parts = dotted.split(".")
        if parts[0] in PRIVATE:
            raise ValueError(f"config key '{dotted}': the privacy section is never passed as params")
        node: Any = config
        for i, part in enumerate(parts):
            if not isinstance(node, Mapping) or part not in node:
                if missing_ok:
                    break
                raise KeyError(f"config key '{'.'.join(parts[:i + 1])}' is missing (selected as '{dotted}')")
            node = node[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = copy.deepcopy(node)
    return canonical(out)
