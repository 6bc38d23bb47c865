"""Print where a finished run left its tables, figures, report and QC (the end of `make demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

SECTIONS = (("tables", "tables/*"), ("figures", "figures/*.png"), ("HTML report", "report.html"),
            ("QC tables", "qc/*"), ("manifest", "manifest/*"), ("runs", "runs/*"))


def summarize(results: Path) -> list[str]:
    lines = [f"ctvlp results in {results.resolve()}"]
    for title, pattern in SECTIONS:
        found = sorted(results.glob(pattern))
        if found:
            shown = ", ".join(p.name for p in found[:6]) + (" ..." if len(found) > 6 else "")
            lines.append(f"  {title:12s} {results / pattern.split('/')[0]}  ({len(found)}: {shown})")
    if len(lines) == 1:
        lines.append("  (nothing yet: run `make demo`)")
    claims = results / "tables" / "claims.md"
    if claims.is_file():  # the paper's claims in miniature, the run's headline
        lines += ["", claims.read_text().rstrip()]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print("\n".join(summarize(Path(args[0] if args else "results"))))


if __name__ == "__main__":
    main()
