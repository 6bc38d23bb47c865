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
from ctvlp.privacy import find_identifiers  # noqa: E402

sys.path.insert(0, str(REPO / "tools"))
from lock_to_env import KINDS, kind_pins, lock_pins, render  # noqa: E402


def test_no_phi_canary_in_results_or_logs_report_and_figures_included(demo_run):
    """Every planted identifier (names, ids, birth dates, accession numbers, institution, physicians) is absent
    from results/ and logs/, looking inside parquet pages, PDF streams and the HTML report's embedded files."""
    canaries = json.loads((demo_run / "demo_data" / "ground_truth" / "phi_canaries.json").read_text())["strings"]
    assert len(canaries) >= 200
    folders = [demo_run / "results", demo_run / "logs"]
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


def test_env_files_match_the_lock_and_what_each_kind_of_rule_imports():
    """envs/ctvlp.yaml is the whole lock; envs/{data,gpu,report}.yaml are regenerated here from what the rule
    scripts of each kind import (measured in fresh interpreters) and must equal the committed files."""
    pins = lock_pins(REPO / "requirements.lock")
    assert (REPO / "envs" / "ctvlp.yaml").read_text() == render("ctvlp", pins)
    assert "torch==2.13.0" in pins
    for kind in KINDS:
        expected = render(kind, kind_pins(kind, pins))
        assert (REPO / "envs" / f"{kind}.yaml").read_text() == expected, f"envs/{kind}.yaml is stale: make envs"
        assert (REPO / "envs" / f"{kind}.post-deploy.sh").is_file()
    report = (REPO / "envs" / "report.yaml").read_text()
    assert "seaborn==" in report and "torch==" not in report and "transformers==" not in report
    data = (REPO / "envs" / "data.yaml").read_text()
    assert "pydicom==" in data and "transformers==" not in data
    assert "peft==" in (REPO / "envs" / "gpu.yaml").read_text()


def test_container_definitions_install_existing_env_files_and_the_package():
    for definition in sorted((REPO / "containers").glob("*.def")):
        text = definition.read_text()
        files = text.split("%files", 1)[1].split("%post", 1)[0].split()
        sources = files[0::2]
        assert all((REPO / src).exists() for src in sources), (definition.name, sources)
        assert "pip install --no-cache-dir --no-deps /opt/ctvlp" in text
        kind = definition.stem
        if kind != "ctvlp":
            assert f"envs/{kind}.yaml" in sources
