"""Run every benchmark script in this folder, one after the other.

    python benchmarks/run_all.py           # `make bench`: each benchmark at its own (real) size
    python benchmarks/run_all.py --smoke   # `make bench-smoke`: each at toy size, minutes in all (CI), so none rots

A benchmark script added to this folder must get its toy-size arguments in SMOKE: the smoke run refuses to
start otherwise.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

# Toy-size arguments per script: the same code paths, a fraction of the work (numbers are not meaningful).
SMOKE = {
    "bench_gpu.py": ["--tiny", "--steps", "1"],
    "bench_gradcache.py": ["--batch", "4", "--micro", "2", "--repeats", "1"],
    "bench_preprocess.py": ["--volumes", "1", "--slices", "40", "--matrix", "128", "--dry-volumes", "2000"],
    "bench_scale.py": ["--instances", "20000", "--series", "200", "--small", "5000", "--parts", "2", "--buckets", "2",
                       "--header-slices", "10", "--header-matrix", "128"],
    "bench_text.py": [],  # the text sets are small already; without a demo cohort it skips the demo figures
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every benchmark at toy size")
    args = parser.parse_args()
    scripts = sorted(Path(__file__).parent.glob("bench_*.py"))
    missing = [s.name for s in scripts if s.name not in SMOKE]
    if args.smoke and missing:
        sys.exit(f"run_all.py: no toy-size arguments for {', '.join(missing)} (add them to SMOKE)")
    for script in scripts:
        extra = SMOKE[script.name] if args.smoke else []
        print(f"== {script.name} {' '.join(extra)}".rstrip(), flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(script), *extra], check=True)
        print(f"== {script.name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
