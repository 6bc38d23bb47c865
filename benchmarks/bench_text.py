"""Text-stage targets (issue: report text), printed, not asserted:
mining precision >= 99 % and recall >= 95 % on the sentence table and on the demo cohort, labels macro F1 >= 0.95
on the demo, mining throughput >= 2,000 reports/s on one core.

Usage: python benchmarks/bench_text.py [DEMO_ROOT]   (default demo_data; run `make demo` first)
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ctvlp.demo.findings import SIMULATED_LABELS
from ctvlp.text.labels import extract_labels
from ctvlp.text.mining import detect_language, find_references
from ctvlp.text.sections import decode_report, split_sections, training_text

REPO = Path(__file__).resolve().parents[1]


def sentence_table_scores() -> tuple[float, float]:
    """Micro precision/recall over (sentence, series, image) triples of the hand-written table."""
    tp = fp = fn = 0
    with open(REPO / "tests" / "data" / "mining_sentences.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            expected = []
            for item in filter(None, row["refs"].split(";")):
                series, rest = item.split(":")
                expected.append((None if series == "-" else int(series), int(rest.split("[")[0])))
            found = [(r.series, r.image) for r in find_references(row["text"])]
            hits = sum(min(found.count(e), expected.count(e)) for e in set(expected))
            tp, fp, fn = tp + hits, fp + len(found) - hits, fn + len(expected) - hits
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def demo_scores(root: Path) -> dict:
    reports = pd.read_csv(root / "hospital" / "reports" / "reports.csv")
    truth = pd.read_csv(root / "ground_truth" / "hospital_references.csv")
    studies = pd.read_csv(root / "ground_truth" / "hospital_studies.csv").set_index("accession")
    tp = fp = fn = 0
    pred, gold = [], []
    for r in reports.itertuples():
        text, _ = decode_report(r.ReportText)
        body = training_text(split_sections(text))
        found = [(r_.series, r_.image) for r_ in find_references(body)]
        planted = truth[truth.accession == r.AccessionNumber]
        expected = [(None if pd.isna(s) else int(s), int(i)) for s, i in zip(planted.series, planted.image)]
        hits = sum(min(found.count(e), expected.count(e)) for e in set(expected))
        tp, fp, fn = tp + hits, fp + len(found) - hits, fn + len(expected) - hits
        labels = extract_labels(body, detect_language(body))
        pred.append([labels[lab] == 1 for lab in SIMULATED_LABELS])
        gold.append([studies.loc[r.AccessionNumber, lab] == 1 for lab in SIMULATED_LABELS])
    pred, gold = np.array(pred), np.array(gold)
    f1 = np.mean([f1_score(gold[:, i], pred[:, i]) for i in range(len(SIMULATED_LABELS))])
    bodies = [training_text(split_sections(decode_report(t)[0])) for t in reports.ReportText]
    repeats = max(1, 4000 // len(bodies))
    start = time.perf_counter()
    for _ in range(repeats):
        for body in bodies:
            find_references(body)
    rate = repeats * len(bodies) / (time.perf_counter() - start)
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "f1": f1, "rate": rate,
            "reports": len(bodies)}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "demo_data")
    p, r = sentence_table_scores()
    print(f"sentence table: mining precision {100 * p:.1f} % (target >= 99), recall {100 * r:.1f} % (target >= 95)")
    if not (root / "ground_truth").exists():
        print(f"no demo cohort at {root}: run `make demo` for the demo figures")
        return
    d = demo_scores(root)
    print(f"demo ({d['reports']} reports): mining precision {100 * d['precision']:.1f} %, recall "
          f"{100 * d['recall']:.1f} %; labels macro F1 {d['f1']:.3f} (target >= 0.95)")
    print(f"mining throughput: {d['rate']:.0f} reports/s on one core (target >= 2,000)")


if __name__ == "__main__":
    main()
