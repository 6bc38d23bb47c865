"""Write envs/ctvlp.yaml from requirements.lock so the conda env and the lock cannot drift.

Usage: python tools/lock_to_env.py [requirements.lock] [envs/ctvlp.yaml]
"""
import sys
from pathlib import Path

HEADER = """# Generated from requirements.lock by `make envs`; a test checks that the two agree.
# conda channels may be unreachable on a site: python comes from conda, everything else as pinned pip entries.
name: ctvlp
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""
SKIP = ("pip==", "setuptools==")


def lock_pins(lock: Path) -> list[str]:
    return [line.strip() for line in lock.read_text().splitlines()
            if line.strip() and not line.startswith("#") and not line.startswith(SKIP)]


def main(lock: str = "requirements.lock", env: str = "envs/ctvlp.yaml") -> None:
    pins = lock_pins(Path(lock))
    Path(env).write_text(HEADER + "".join(f"      - {pin}\n" for pin in pins))


if __name__ == "__main__":
    main(*sys.argv[1:])
