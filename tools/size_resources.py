"""Compare what each rule measured (Snakemake's benchmark files) with what the slurm profile requests.

    python tools/size_resources.py logs/benchmarks [--profile ~/.config/snakemake/slurm/config.yaml]

Every rule with a `benchmark:` writes logs/benchmarks/<rule>[_<wildcards>].tsv (peak resident memory `max_rss`
in MB, wall time `s`). This prints, per rule, the largest of those over its jobs, the profile's first-attempt
memory and runtime, and a suggestion (1.5 x the measurement, at least 1 GB / 10 min) to put in the installed
profile's set-resources. The profile's requests are estimates until a site has measured its own data.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pandas as pd
import yte

REPO = Path(__file__).resolve().parents[1]
RULES_WITH_BENCHMARKS = ("demo_cohort", "dicom_index", "preprocess", "window_features", "train")


def measured(folder: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(folder.glob("*.tsv")):
        rule = next((r for r in RULES_WITH_BENCHMARKS if re.fullmatch(rf"{r}(_.*)?", path.stem)), path.stem)
        table = pd.read_csv(path, sep="\t")
        rows.append({"rule": rule, "max_rss_mb": pd.to_numeric(table["max_rss"], errors="coerce").max(),
                     "seconds": table["s"].max()})
    if not rows:
        raise SystemExit(f"{folder}: no benchmark files (*.tsv)")
    return pd.DataFrame(rows).groupby("rule").max()


def requested(profile: Path, rule: str) -> tuple[float, float]:
    prof = yte.process_yaml(profile.read_text())
    res = {**prof.get("default-resources", {}), **prof.get("set-resources", {}).get(rule, {})}
    value = lambda key: eval(str(res[key]), {}, {"attempt": 1})  # noqa: E731,S307 (the profile's own expressions)
    return value("mem_mb"), value("runtime")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", type=Path)
    parser.add_argument("--profile", type=Path, default=REPO / "profiles" / "slurm" / "config.yaml")
    args = parser.parse_args()
    table = measured(args.benchmarks)
    print(f"{'rule':<16} {'peak MB':>9} {'asked MB':>9} {'suggest MB':>10} {'max min':>8} {'asked min':>9} "
          f"{'suggest min':>11}")
    for rule, row in table.iterrows():
        mem, runtime = requested(args.profile, rule)
        minutes = row.seconds / 60
        print(f"{rule:<16} {row.max_rss_mb:>9.0f} {mem:>9.0f} {max(1000, math.ceil(1.5 * row.max_rss_mb)):>10} "
              f"{minutes:>8.1f} {runtime:>9.0f} {max(10, math.ceil(1.5 * minutes)):>11}")


if __name__ == "__main__":
    main()
