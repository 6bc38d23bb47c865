"""Text-stage figures (issues 19 and 24), printed, not asserted.

Per language: reference precision/recall at each confidence level (a reference counts as found when its
confidence is at least the level: the operating points of ``text.mining.min_confidence``; targets at the default:
precision >= 0.99 at recall >= 0.90) and report-level label macro F1 (target >= 0.97) on
  * the old development table  tests/data/mining_sentences.tsv (the patterns were written against it),
  * the second development set tests/data/text_dev/ (written before the patterns of issue 19 were changed),
  * the first held-out set     tests/data/heldout/ (issue 19; reported on in an earlier session and tuned to in
    issue 24: a development set now, labelled so),
  * the second held-out set    tests/data/heldout_2/ (issue 24; written by someone who never saw the rules and
    frozen with its hash before the rules changed; reported on once, then tuned to in issue 24's second round:
    a development set now, labelled so; printed when its FROZEN file is there, unless --skip heldout_2),
  * the third held-out set     tests/data/heldout_3/ (issue 24's second round; written by someone who never saw the
    rules and frozen with its hash before it was opened, after the round's last rule change; reported on once, then
    tuned to in issue 24's third round: a development set now, labelled so; printed when its FROZEN file is there,
    unless --skip heldout_3),
  * the fourth held-out set    tests/data/heldout_4/ (issue 24's third round; written by someone who never saw the
    rules and frozen with its hash while the round ran; opened once, after the round's last rule change;
    unless --skip heldout_4),
  * the demo cohort            DEMO_ROOT (default demo_data; `make demo` writes it),
plus the rule path's throughput (target >= 2,000 reports/s on one core, with the machine's load beside it) and
whether any demo snippet spans two sentences.

A reference is scored as (prior?, series, first image, last image): a range must match as a range and a
prior-study reference must be marked prior. Labels are scored 1 vs not-1 over all cells, and again with the
gold -1 (explicitly uncertain) cells left out; a label is left out of the macro mean where it has neither a
gold nor a predicted positive (F1 undefined).

Usage: python benchmarks/bench_text.py [DEMO_ROOT] [--skip heldout_2] [--skip heldout_3] [--skip heldout_4] [--repeats N]
"""

from __future__ import annotations

import argparse
import csv
import os
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
Ref = tuple  # (prior: bool, series: int | None, first: int, last: int)


def parse_refs(spec: str) -> list[Ref]:
    """Both table formats: old ``3:42[40-44]`` and new ``3:40-44`` / ``prior:3:198`` / ``-:12``."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        prior = item.startswith("prior:")
        item = item[len("prior:"):] if prior else item
        series, rest = item.split(":", 1)
        if "[" in rest:
            lo, hi = rest.split("[")[1].rstrip("]").split("-")
        elif "-" in rest:
            lo, hi = rest.split("-")
        else:
            lo = hi = rest
        out.append((prior, None if series == "-" else int(series), int(lo), int(hi)))
    return out


def found_refs(text: str, min_confidence: str = "low") -> list[Ref]:
    """The references found at ``min_confidence`` or better."""
    from ctvlp.text.mining import find_references, meets
    out = []
    for r in find_references(text):
        if not meets(r.confidence, min_confidence):
            continue
        lo, hi = r.image_range if r.image_range else (r.image, r.image)
        out.append((bool(r.prior), r.series, lo, hi))
    return out


def count(found: list[Ref], expected: list[Ref]) -> tuple[int, int, int]:
    f, e = Counter(found), Counter(expected)
    tp = sum((f & e).values())
    return tp, sum(f.values()) - tp, sum(e.values()) - tp


def pr(tp: int, fp: int, fn: int) -> str:
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return f"precision {p:.3f}, recall {r:.3f} ({tp + fn} refs, {tp + fp} found)"


def table_scores(paths: list[Path]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(language, min_confidence) -> (tp, fp, fn) over every table of a set."""
    from ctvlp.text.mining import CONFIDENCES
    totals: dict[tuple[str, str], list[int]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                for level in CONFIDENCES:
                    t = totals.setdefault((row["lang"], level), [0, 0, 0])
                    for i, v in enumerate(count(found_refs(row["text"], level), parse_refs(row["refs"]))):
                        t[i] += v
    return {key: tuple(v) for key, v in sorted(totals.items())}


def macro_f1(gold: np.ndarray, pred: np.ndarray, skip_uncertain: bool) -> float:
    scores = []
    for j in range(gold.shape[1]):
        keep = gold[:, j] != -1 if skip_uncertain else np.ones(len(gold), bool)
        g, p = gold[keep, j] == 1, pred[keep, j] == 1
        if not g.any() and not p.any():
            continue
        tp = int((g & p).sum())
        scores.append(2 * tp / (g.sum() + p.sum()))
    return float(np.mean(scores)) if scores else float("nan")


def label_report_text(text: str, lang: str) -> dict[str, int]:
    """The rule path the workflow runs: sections, then the labeler on findings + impression."""
    from ctvlp.text.labels import extract_labels
    from ctvlp.text.sections import split_sections, training_text
    body = training_text(split_sections(text)) or text
    return extract_labels(body, lang)


def report_scores(paths: list[Path], labels: tuple[str, ...] = CTRATE_LABELS) -> dict[str, tuple[float, float, int]]:
    by_lang: dict[str, tuple[list, list]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            pred = label_report_text(item["text"], item["lang"])
            g, p = by_lang.setdefault(item["lang"], ([], []))
            g.append([int(item["labels"].get(lab, 0)) for lab in labels])
            p.append([int(pred[lab]) for lab in labels])
    return {lang: (macro_f1(np.array(g), np.array(p), False), macro_f1(np.array(g), np.array(p), True), len(g))
            for lang, (g, p) in sorted(by_lang.items())}


def print_set(name: str, tables: list[Path], reports: list[Path]) -> None:
    from ctvlp.text.mining import CONFIDENCES, min_confidence_of
    default = min_confidence_of(None)
    scores = table_scores(tables) if tables else {}
    for lang in sorted({lang for lang, _ in scores}):
        for level in CONFIDENCES:
            mark = " (default)" if level == default else ""
            print(f"{name} [{lang}] references, min_confidence {level}{mark}: {pr(*scores[(lang, level)])}")
    if reports:
        for lang, (f1, f1_skip, n) in report_scores(reports).items():
            print(f"{name} [{lang}] labels ({n} reports): macro F1 {f1:.3f}; without gold -1 cells {f1_skip:.3f}")


def demo_scores(root: Path) -> None:
    from ctvlp.demo.findings import SIMULATED_LABELS
    from ctvlp.text.labels import extract_labels
    from ctvlp.text.mining import detect_language, find_references
    from ctvlp.text.sentences import sentence_spans
    from ctvlp.text.sections import decode_report, split_sections, training_text
    reports = pd.read_csv(root / "hospital" / "reports" / "reports.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(root / "ground_truth" / "hospital_references.csv")
    studies = pd.read_csv(root / "ground_truth" / "hospital_studies.csv", dtype={"accession": str}).set_index("accession")
    refs: dict[str, list[int]] = {}
    gold: dict[str, list] = {}
    pred: dict[str, list] = {}
    crossing = snippets = 0
    bodies = []
    for r in reports.itertuples():
        text, _ = decode_report(r.ReportText)
        body = training_text(split_sections(text))
        bodies.append(body)
        lang = detect_language(body)
        found = find_references(body)
        planted = truth[truth.accession.astype(str) == r.AccessionNumber]
        expected = [(False, None if pd.isna(s) else int(s), int(i), int(i)) for s, i in zip(planted.series, planted.image)]
        got = [(bool(getattr(x, "prior", False)), x.series, x.image, x.image) for x in found]
        t = refs.setdefault(lang, [0, 0, 0])
        for i, v in enumerate(count(got, expected)):
            t[i] += v
        sentences = [body[a:b] for a, b in sentence_spans(body, lang)]
        for x in found:
            snippets += 1
            crossing += not any(all(w in s for w in x.snippet.split()) for s in sentences)
        if r.AccessionNumber in studies.index:
            labels = extract_labels(body, lang)
            gold.setdefault(lang, []).append([int(studies.loc[r.AccessionNumber, lab] == 1) for lab in SIMULATED_LABELS])
            pred.setdefault(lang, []).append([labels[lab] for lab in SIMULATED_LABELS])
    for lang in sorted(refs):
        print(f"demo [{lang}] references: {pr(*refs[lang])}")
    for lang in sorted(gold):
        print(f"demo [{lang}] labels ({len(gold[lang])} reports, {len(SIMULATED_LABELS)} simulated labels): "
              f"macro F1 {macro_f1(np.array(gold[lang]), np.array(pred[lang]), False):.3f}")
    print(f"demo snippets spanning two sentences: {crossing} of {snippets} (target 0)")
    throughput(bodies)


def throughput(bodies: list[str], repeats: int = 3) -> None:
    """Reports per CPU-second of this one process (one core): references, labels, both. CPU time, best of
    ``repeats``, because the wall clock of a shared machine measures the neighbours; every round splits sentences
    afresh. The load average is printed beside it: a loaded machine still slows a process (caches, hyperthreads)."""
    from ctvlp.text.labels import extract_labels
    from ctvlp.text.mining import detect_language, find_references
    from ctvlp.text.sentences import _line_cuts
    langs = [detect_language(b) for b in bodies]
    extract_labels("warm up", "en")
    find_references("warm up (image 3)")
    for name, fn in (("references", lambda b, lg: find_references(b, lang=lg)),
                     ("labels", lambda b, lg: extract_labels(b, lg)),
                     ("references + labels", lambda b, lg: (find_references(b, lang=lg), extract_labels(b, lg)))):
        best = float("inf")
        for _ in range(repeats):
            _line_cuts.cache_clear()
            start = time.process_time()
            for b, lg in zip(bodies, langs):
                fn(b, lg)
            best = min(best, time.process_time() - start)
        print(f"throughput {name}: {len(bodies) / max(best, 1e-9):.0f} reports per CPU-second ({len(bodies)} reports; "
              f"target >= 2,000; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def report_bodies(paths: list[Path]) -> list[str]:
    """What the workflow labels: findings + impression of each report (sections as the rule path splits them)."""
    from ctvlp.text.sections import split_sections, training_text
    texts = [json.loads(line)["text"] for p in paths for line in p.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    return [training_text(split_sections(t)) or t for t in texts]


# the sets frozen with their hash before they were opened (tests/data/<name>/FROZEN), with how each is used now
FROZEN_SETS = (("heldout_2", "held-out 2 (development since issue 24's second round)"),
               ("heldout_3", "held-out 3 (development since issue 24's third round)"),
               ("heldout_4", "held-out 4 (frozen)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_root", nargs="?", type=Path, default=REPO / "demo_data")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["heldout", *(name for name, _ in FROZEN_SETS), "demo"], help="leave a set out (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds (the best counts)")
    args = parser.parse_args()
    root = args.demo_root
    print_set("old table (development)", [DATA / "mining_sentences.tsv"], [])
    dev = DATA / "text_dev"
    print_set("dev set (development)", sorted(dev.glob("references_*.tsv")), sorted(dev.glob("reports_*.jsonl")))
    held = DATA / "heldout"
    if "heldout" not in args.skip:
        print_set("held-out 1 (development since issue 24)",
                  sorted(held.glob("references_*.tsv")), sorted(held.glob("reports_*.jsonl")))
    for name, label in FROZEN_SETS:
        folder = DATA / name
        if name in args.skip:
            print(f"{label}: skipped (--skip {name})")
        elif (folder / "FROZEN").exists():
            print_set(label, sorted(folder.glob("references_*.tsv")), sorted(folder.glob("reports_*.jsonl")))
        else:
            print(f"{label}: tests/data/{name}/FROZEN not present yet")
    if (root / "ground_truth").exists() and "demo" not in args.skip:
        demo_scores(root)
    else:
        print(f"no demo cohort at {root}: run `make demo` for the demo figures; throughput on the text sets' reports")
        throughput(report_bodies(sorted(dev.glob("reports_*.jsonl")) + sorted(held.glob("reports_*.jsonl"))),
                   args.repeats)


if __name__ == "__main__":
    main()
