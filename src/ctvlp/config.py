"""Configuration checks that must fail before any job starts, with one line naming the key or file.

jsonschema's own messages are long and bury the key; users of a cluster workflow need the dotted
key and what was expected, nothing else. Kept free of Snakemake so the CLI can use it too.
"""

from __future__ import annotations

import importlib.util
import os
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
        return {
            "hospital": {"dicom_root": str(root / "hospital" / "DICOM"),
                         "reports_csv": str(root / "hospital" / "reports" / "reports.csv")},
            "ct_rate": {"root": str(root / "ct_rate" / "dataset"), "release": "fixed"},
            "rad_chestct": {"root": str(root / "rad_chestct")},
        }
    return {name: entry for name, entry in (config.get("data") or {}).items() if entry}


def input_paths(config: dict) -> dict[str, tuple[str, str]]:
    """Configured input paths as {dotted key: (path, 'dir'|'file')} for the sources in use."""
    data = data_sources(config)
    found: dict[str, tuple[str, str]] = {}
    kinds = {"dicom_root": "dir", "reports_csv": "file", "root": "dir"}
    for source, entry in data.items():
        for key, value in (entry or {}).items():
            if key in kinds:
                found[f"data.{source}.{key}"] = (str(value), kinds[key])
    return found


def check_inputs(config: dict) -> None:
    """Every configured data root exists and is readable (skipped when the demo generates them)."""
    if not config.get("preprocess", {}).get("keep_volumes", True) and (
            config.get("model", {}).get("window_encoder", {}).get("trainable")):
        raise ConfigError("config key 'preprocess.keep_volumes': false needs a frozen window encoder "
                          "(model.window_encoder.trainable is true: training reads the cached volumes)")
    file_list = config.get("ingest", {}).get("file_list")
    if file_list and not Path(file_list).is_file():
        raise ConfigError(f"config key 'ingest.file_list': file '{file_list}' does not exist")
    if config.get("demo", {}).get("enabled"):
        return
    if not data_sources(config):
        raise ConfigError("config key 'data': no data source configured (hospital, ct_rate or rad_chestct)")
    for key, (value, kind) in input_paths(config).items():
        path = Path(value)
        if kind == "dir" and not path.is_dir():
            raise ConfigError(f"config key '{key}': directory '{value}' does not exist")
        if kind == "file" and not path.is_file():
            raise ConfigError(f"config key '{key}': file '{value}' does not exist")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"config key '{key}': '{value}' is not readable")
    ctrate_cfg = data_sources(config).get("ct_rate")
    if ctrate_cfg:  # the other release on disk would give 0 volumes (or misread ones): stop before any job
        from ctvlp.io.ctrate import ReleaseMismatchError, check_release

        try:
            check_release(ctrate_cfg["root"], ctrate_cfg.get("release", "fixed"))
        except ReleaseMismatchError as err:
            raise ConfigError(f"config key 'data.ct_rate.release': {err}") from err


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
