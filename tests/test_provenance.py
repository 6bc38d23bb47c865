"""Provenance (issue 23, item 6): what made a run (software, environments, data, weights), with nothing identifying.

The library part runs here on small folders; ``test_run``'s provenance.json files are checked in the workflow test.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import subprocess

import pytest

from conftest import REPO
from ctvlp.core.provenance import (data_fingerprint, data_record, environment_record, identifying_strings,
                                   label_files, sha256_file, software_state, weights_record)


def _tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _forbidden(*folders) -> list[str]:
    user = getpass.getuser()  # ("root" in a container: also a key of the record, so not searched for)
    return [socket.gethostname(), *([user] if user != "root" else []), *(str(f) for f in folders)]


def test_data_fingerprint_counts_sizes_and_salted_keys(tmp_path):
    root = _tree(tmp_path / "data", {"a/x.dcm": b"12345", "a/y.dcm": b"1", "b/z.nii.gz": b"abc"})
    first = data_fingerprint(root, b"salt")
    assert first["files"] == 3 and first["bytes"] == 9 and re.fullmatch(r"[0-9a-f]{64}", first["sha256"])
    assert data_fingerprint(root, b"salt") == first  # deterministic (sorted keys, not the walk's order)
    assert data_fingerprint(root, b"other salt")["sha256"] != first["sha256"]  # keys are salted
    (root / "a" / "y.dcm").write_bytes(b"22")  # a size changes: the fingerprint changes
    assert data_fingerprint(root, b"salt")["sha256"] != first["sha256"]
    (root / "a" / "y.dcm").write_bytes(b"3")  # the same size and name again: the same fingerprint (no content read)
    assert data_fingerprint(root, b"salt") == first
    (root / "b" / "z.nii.gz").rename(root / "b" / "w.nii.gz")  # a renamed file changes it
    assert data_fingerprint(root, b"salt")["sha256"] != first["sha256"]
    assert data_fingerprint(root / "a" / "x.dcm", b"salt")["files"] == 1  # a single file (the reports export)


def test_data_record_hashes_label_files_and_names_no_path(tmp_path):
    ct = _tree(tmp_path / "Patient_Mueller" / "ct_rate", {
        "valid_fixed/valid_1/valid_1_a/valid_1_a_1.nii.gz": b"v",
        "multi_abnormality_labels/valid_predicted_labels.csv": b"VolumeName,Cardiomegaly\n",
        "metadata/validation_metadata.csv": b"VolumeName\n"})
    reports = tmp_path / "Patient_Mueller" / "reports.csv"
    reports.write_text("AccessionNumber,ReportText\n")
    sources = {"ct_rate": {"root": str(ct), "release": "fixed"},
               "hospital": {"dicom_root": str(ct / "valid_fixed"), "reports_csv": str(reports)}}
    record = data_record(sources, b"salt")
    ctr = record["sources"]["ct_rate"]
    assert ctr["fingerprint"]["root"]["files"] == 3
    assert ctr["label_files"]["multi_abnormality_labels/valid_predicted_labels.csv"] == sha256_file(
        ct / "multi_abnormality_labels" / "valid_predicted_labels.csv")
    assert set(record["sources"]["hospital"]["label_files"]) == {"reports export"}
    assert set(record["sources"]["hospital"]["fingerprint"]) == {"dicom_root", "reports_csv"}
    assert identifying_strings(record, [*_forbidden(tmp_path), "Mueller", "valid_1_a"]) == []
    assert set(label_files("ct_rate", sources["ct_rate"])) == {"multi_abnormality_labels/valid_predicted_labels.csv",
                                                                "metadata/validation_metadata.csv"}


def test_software_state_of_the_repository_and_without_git(tmp_path, monkeypatch):
    state = software_state(REPO)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head:  # a git checkout (CI and development)
        assert state["commit"] == head and isinstance(state["dirty"], bool)
    monkeypatch.setenv("CTVLP_DEPLOYED_TAG", "ctvlp-v1.2.3")
    deployed = software_state(tmp_path)  # no git here: the deployed tag
    assert deployed == {"commit": None, "dirty": None, "tag": "ctvlp-v1.2.3"}
    monkeypatch.delenv("CTVLP_DEPLOYED_TAG")
    assert software_state(tmp_path)["tag"].startswith("ctvlp ")  # else the package version


def test_environment_record_of_this_process():
    record = environment_record()
    assert re.fullmatch(r"\d+\.\d+\.\d+", record["python"])
    assert record["packages"]["numpy"] and "pytest" in record["packages"] and "ctvlp" in record["packages"]
    assert list(record["packages"])[0] in ("torch", "numpy")  # the key packages first
    assert record["environment"]["kind"] in ("venv", "conda", "container", "system")
    import torch

    assert record["torch"] == torch.__version__
    if not torch.cuda.is_available():  # CPU: every accelerator field null
        assert [record[k] for k in ("cuda", "cudnn", "nccl", "gpu", "driver")] == [None] * 5
    else:
        assert record["gpu"] and record["cuda"]
    assert identifying_strings(record, _forbidden(REPO)) == []


def test_weights_record_hashes_every_file_and_keeps_the_released_hashes(tmp_path):
    weights = _tree(tmp_path / "weights", {"window_encoder.safetensors": b"w", "text.safetensors": b"t"})
    (weights / "manifest.json").write_text(json.dumps({"sources": {"spectre.pt": "ab" * 32}}))
    record = weights_record([weights])["weights"]
    assert record["files"]["window_encoder.safetensors"] == sha256_file(weights / "window_encoder.safetensors")
    assert set(record["files"]) == {"manifest.json", "text.safetensors", "window_encoder.safetensors"}
    assert record["released_files"] == {"spectre.pt": "ab" * 32}


@pytest.mark.workflow
def test_every_run_has_its_provenance(test_run):
    import yaml

    runs = [line.split("\t")[0] for line in (REPO / ".test/ablations.tsv").read_text().splitlines()[1:]
            if line and not line.startswith("#")]
    for run in runs:
        record = json.loads((test_run / "results" / "runs" / run / "provenance.json").read_text())
        assert record["run"] == run and set(record["environments"]) == {"data", "gpu", "report"}
        assert record["rules"]["train"] == "gpu" and record["rules"]["report_text"] == "data"
        assert record["rules"]["tables"] == "report"
        for env in record["environments"].values():
            assert env["python"] and env["packages"]
        assert record["environments"]["gpu"]["torch"]  # the gpu environment has torch (its CUDA: null on CPU)
        sources = record["data"]["sources"]
        assert {"hospital", "ct_rate", "rad_chestct"} <= set(sources)
        assert sources["hospital"]["fingerprint"]["dicom_root"]["files"] > 10
        assert "reports export" in sources["hospital"]["label_files"]
        assert "final.json" in record["files"]
        software = record["software"]
        assert software["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", software["commit"])
        salt = yaml.safe_load((REPO / "config/config.yaml").read_text())["privacy"]["salt"]
        assert identifying_strings(record, [*_forbidden(test_run, REPO), salt]) == []
        assert "/" + "home" not in json.dumps(record)
