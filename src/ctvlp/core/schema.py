"""The config schema as package data, and the defaults it gives.

The schema (``ctvlp/resources/config.schema.yaml``: package data, so that an installed wheel such as the GPU
image's has it; ``workflow/schemas/config.schema.yaml`` links to it) is the one place a default is written:
the workflow's validation fills it into the config, and code that reads a config built by hand (tests,
notebooks) takes the same value from here. In ``core`` so that every package may read it (the models'
specs as well as the training settings) without importing ``train``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "resources" / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    if not SCHEMA_FILE.exists():
        raise FileNotFoundError(f"{SCHEMA_FILE}: the config schema (the defaults of every setting) is missing; "
                                "reinstall ctvlp (it ships as package data)")
    return yaml.safe_load(SCHEMA_FILE.read_text())


def schema_defaults(section: str) -> dict:
    """{key: default} of the keys of config section ``section`` (dotted for a nested one, e.g.
    ``model.text_encoder``) that the schema gives a default."""
    node = schema()
    for part in section.split("."):
        node = node["properties"][part]
    return {key: copy.deepcopy(spec["default"]) for key, spec in node["properties"].items() if "default" in spec}
