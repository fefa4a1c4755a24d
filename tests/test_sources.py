"""The source encoding of stage 4's results paths (lpaf.sources)."""

import re

import pytest

from lpaf.sources import SEGMENT_PATTERN, from_segment, is_pruned, run_dir, to_segment


@pytest.mark.parametrize(
    "source,segment",
    [
        ("finetune", "finetune"),
        ("prune/movement/density0.3", "prune-movement-density0.3"),
        ("prune/first_order_taylor/density0.05", "prune-first_order_taylor-density0.05"),
    ],
)
def test_round_trip_and_pattern(source, segment):
    assert to_segment(source) == segment
    assert from_segment(segment) == source
    assert re.fullmatch(SEGMENT_PATTERN, segment)
    assert is_pruned(source) == (source != "finetune")


def test_run_dirs():
    assert run_dir("results", "m", "MRPC", "finetune", 42) == "results/m/MRPC/finetune/seed42"
    for source in ("prune/movement/density0.3", "prune-movement-density0.3"):
        assert (
            run_dir("results", "m", "MRPC", source, 1)
            == "results/m/MRPC/prune/movement/density0.3/seed1"
        )


@pytest.mark.parametrize("bad", ["prune/movement", "prune-movement-0.3", "pruned/x/density0.3"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="neither 'finetune'"):
        to_segment(bad) if "/" in bad else from_segment(bad)
    assert not re.fullmatch(SEGMENT_PATTERN, bad)
