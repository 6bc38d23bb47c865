"""The held-out text sets stay as they were frozen (issue 24): each ``tests/data/heldout*/FROZEN`` lists the sha256
of its data files, written before the set was first opened; an edit after that would make its figures
development figures without anyone saying so."""

from pathlib import Path

import pytest

from ctvlp.core.provenance import sha256_file

DATA = Path(__file__).parent / "data"
FROZEN = sorted(DATA.glob("heldout*/FROZEN"))


def test_the_frozen_sets_are_there():
    assert {p.parent.name for p in FROZEN} >= {"heldout_2", "heldout_3", "heldout_4"}


@pytest.mark.parametrize("frozen", FROZEN, ids=[p.parent.name for p in FROZEN])
def test_every_frozen_file_has_its_hash(frozen):
    listed = [line.split() for line in frozen.read_text().splitlines() if line.strip()]
    assert listed
    for digest, name in listed:
        assert sha256_file(frozen.parent / name) == digest, f"{frozen.parent.name}/{name} changed since it was frozen"
