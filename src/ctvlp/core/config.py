"""Configuration checks that must fail before any job starts, with one line naming the key or file.

jsonschema's own messages are long and bury the key; users of a cluster workflow need the dotted
key and what was expected, nothing else. Kept free of Snakemake so the CLI can use it too. The checks
that look at the configured inputs on disk live in ``ctvlp.ingest.inputs`` (they read the source
adapters; this module stays a leaf every package may import).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration problem, worded as one line: key or file, then what was expected."""


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_config(config: dict, schema_file: str | Path) -> None:
    """Raise ConfigError for the first schema violation, naming the dotted key."""
    schema = yaml.safe_load(Path(schema_file).read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        key = _dotted([*err.path, extra[0]]) if extra else _dotted(err.path)
        raise ConfigError(f"config key '{key}': unknown key (allowed here: {', '.join(allowed)})")
    if err.validator == "required":
        raise ConfigError(f"config key '{_dotted(err.path)}': {err.message}")
    raise ConfigError(f"config key '{_dotted(err.path)}': {err.message}")


def data_sources(config: dict) -> dict[str, dict | None]:
    """The data sources in use: the demo cohort's folders in demo mode, else ``config['data']``."""
    demo = config.get("demo") or {}
    if demo.get("enabled"):
        root = Path(demo["root"])
        minis = demo.get("minis") or {}
        rate = ({name: {"rate_labels": str(root / name / "report_structuring" / "p0rate_en")}
                 for name in ("ct_rate", "merlin", "inspect")} if minis.get("rate_labels") else {})
        sources = {
            "hospital": {"dicom_root": str(root / "hospital" / "DICOM"),
                         "reports_csv": str(root / "hospital" / "reports" / "reports.csv")},
            "ct_rate": {"root": str(root / "ct_rate" / "dataset"), "release": "fixed"},
            "rad_chestct": {"root": str(root / "rad_chestct")},
            **{name: {"root": str(root / name)} for name in ("merlin", "inspect") if minis.get(f"{name}_scans", 0)},
        }
        return {name: {**entry, **rate.get(name, {})} for name, entry in sources.items()}
    return {name: entry for name, entry in (config.get("data") or {}).items() if entry}


def resolve_model_path(spec: str) -> Path:
    """A local model folder; ``package:<module>/<subdir>`` points inside an installed wheel."""
    if not spec.startswith("package:"):
        return Path(spec)
    module, _, sub = spec[len("package:"):].partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model path '{spec}': package '{module}' is not installed")
    return Path(list(found.submodule_search_locations)[0]) / sub


def load_yaml(path: str | Path) -> Any:
    return yaml.safe_load(Path(path).read_text())
