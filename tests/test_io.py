"""Results are complete or absent."""

import pytest

from lpaf.io import atomic_dir, atomic_path, read_json, write_json


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed")
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_json_round_trip_writes_null_for_nan(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1.5, "b": float("nan"), "c": [1, 2]})
    assert read_json(tmp_path / "m.json") == {"a": 1.5, "b": None, "c": [1, 2]}
