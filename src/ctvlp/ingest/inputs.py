"""Checks of the configured inputs on disk, run before any job starts: every data root present and readable,
the public layouts an adapter reads, the report columns and the CT-RATE release; and the folders a container
must see. Errors are ``ConfigError`` lines naming the dotted key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ctvlp.core.config import ConfigError, data_sources


def input_paths(config: dict) -> dict[str, tuple[str, str]]:
    """Configured input paths as {dotted key: (path, 'dir'|'file')} for the sources in use."""
    data = data_sources(config)
    found: dict[str, tuple[str, str]] = {}
    kinds = {"dicom_root": "dir", "reports_csv": "file", "root": "dir", "rate_labels": "dir"}
    for source, entry in data.items():
        for key, value in (entry or {}).items():
            if key in kinds and value is not None:
                found[f"data.{source}.{key}"] = (str(value), kinds[key])
        for sub, kind in REQUIRED_INSIDE.get(source, ()):  # the public layout the adapter reads
            if entry and entry.get("root"):
                found[f"data.{source}.root"] = found.get(f"data.{source}.root", (str(entry["root"]), "dir"))
                found[f"data.{source}.root ({sub})"] = (str(Path(entry["root"]) / sub), kind)
    return found


# Files and folders a public source's root must hold, as the datasets are distributed (checked before any job).
REQUIRED_INSIDE = {
    "merlin": (("merlin_data", "dir"), ("reports_final.xlsx", "file")),
    "inspect": (("full/CTPA", "dir"), ("full/study_mapping_*.tsv", "glob"), ("full/impressions_*.tsv", "glob"),
                ("full/splits_*.tsv", "glob")),
}


def rate_config_dir(config: dict) -> str | None:
    """RadFinder-style RATE configuration folder: text.rate.config_dir, or the demo's own when its minis carry
    RATE label files."""
    demo = config.get("demo") or {}
    if demo.get("enabled") and (demo.get("minis") or {}).get("rate_labels"):
        return str(Path(demo["root"]) / "rate" / "modalities_en")
    return ((config.get("text") or {}).get("rate") or {}).get("config_dir")


def check_inputs(config: dict) -> None:
    """Every configured data root exists and is readable (skipped when the demo generates them)."""
    if not config.get("preprocess", {}).get("keep_volumes", True) and (
            config.get("model", {}).get("window_encoder", {}).get("trainable")):
        raise ConfigError("config key 'preprocess.keep_volumes': false needs a frozen window encoder "
                          "(model.window_encoder.trainable is true: training reads the cached volumes)")
    if (config.get("pretrain") or {}).get("enabled") and (config.get("model") or {}).get("weights_dir"):
        raise ConfigError("config key 'pretrain.enabled': true would replace the window encoder imported into "
                          "model.weights_dir with this workflow's own pretraining; set one of the two")
    if not config.get("preprocess", {}).get("keep_volumes", True) and (config.get("pretrain") or {}).get("enabled"):
        raise ConfigError("config key 'preprocess.keep_volumes': false writes no volume cache, but pretrain.enabled is "
                          "true and window-encoder pretraining reads the cached volumes")
    file_list = config.get("ingest", {}).get("file_list")
    if file_list and not Path(file_list).is_file():
        raise ConfigError(f"config key 'ingest.file_list': file '{file_list}' does not exist")
    if config.get("demo", {}).get("enabled"):
        return
    if not data_sources(config):
        raise ConfigError("config key 'data': no data source configured (hospital, ct_rate, rad_chestct, merlin or "
                          "inspect)")
    rate_dir = rate_config_dir(config)
    paths = dict(input_paths(config))
    if rate_dir:
        paths["text.rate.config_dir"] = (str(rate_dir), "dir")
        paths["text.rate.config_dir (question_maps)"] = (str(Path(rate_dir) / "question_maps"), "dir")
    for key, (value, kind) in paths.items():
        path = Path(value)
        if kind == "glob":
            if not any(path.parent.glob(path.name)):
                raise ConfigError(f"config key '{key.split(' ')[0]}': no file matching '{value}'")
            continue
        name = key.split(" ")[0]
        if kind == "dir" and not path.is_dir():
            raise ConfigError(f"config key '{name}': directory '{value}' does not exist")
        if kind == "file" and not path.is_file():
            raise ConfigError(f"config key '{name}': file '{value}' does not exist")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"config key '{name}': '{value}' is not readable")
    hospital = data_sources(config).get("hospital")
    if hospital and hospital.get("reports_csv"):  # a wrong column name is a configuration error: header only
        from ctvlp.text.report_io import ReportFileError, check_report_columns

        try:
            check_report_columns(hospital["reports_csv"], (config.get("text") or {}).get("report_columns"))
        except ReportFileError as err:
            raise ConfigError(f"config key 'text.report_columns': {err}") from err
    ctrate_cfg = data_sources(config).get("ct_rate")
    if ctrate_cfg:  # the other release on disk would give 0 volumes (or misread ones): stop before any job
        from ctvlp.io.ctrate import ReleaseMismatchError, check_release

        try:
            check_release(ctrate_cfg["root"], ctrate_cfg.get("release", "fixed"))
        except ReleaseMismatchError as err:
            raise ConfigError(f"config key 'data.ct_rate.release': {err}") from err


def bind_paths(config: dict, workdir: str | Path, also: Iterable[str | Path] = ()) -> list[str]:
    """Folders a container must see: every configured absolute path outside the working directory, and the
    folders of ``also`` (the workflow's own src/) where they are outside it.

    Apptainer mounts only the working directory (Snakemake passes it as --home); data roots, model files,
    label sets and a results folder elsewhere must be bound or the rule fails inside the image with
    "file not found". Files bind their folder; folders that do not exist yet (results, logs) are created.
    """
    work = Path(workdir).resolve()
    model = config.get("model") or {}
    text = config.get("text") or {}
    demo = config.get("demo") or {}
    candidates = [value for value, _kind in input_paths(config).values()]
    candidates += [config.get("results"), config.get("logs"), demo.get("root") if demo.get("enabled") else None,
                   (model.get("window_encoder") or {}).get("weights"), (model.get("text_encoder") or {}).get("path"),
                   text.get("label_set"), *(text.get("mining_patterns") or []), *(str(Path(a).resolve()) for a in also)]
    found: list[str] = []
    for value in candidates:
        if not value or str(value).startswith("package:") or not Path(value).is_absolute():
            continue
        path = Path(value)
        if str(value) in (config.get("results"), config.get("logs"), demo.get("root")):
            path.mkdir(parents=True, exist_ok=True)
        folder = (path if path.is_dir() else path.parent).resolve()
        if folder == work or work in folder.parents or not folder.exists():
            continue
        if not any(folder == f or f in folder.parents for f in map(Path, found)):
            found = [f for f in found if folder not in Path(f).parents] + [str(folder)]
    return sorted(found)
