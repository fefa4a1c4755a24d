"""``lpaf inspect`` on tiny dense, sparse and low-rank models, and its errors."""

from __future__ import annotations

import json
import re

import pytest
import torch

from lpaf.accounting import count_parameters
from lpaf.cli import main
from lpaf.compressed import save_compressed
from lpaf.factorize.layer import swap_to_lowrank

QUERY0 = "bert.encoder.layer.0.attention.self.query"


@pytest.fixture
def model(tiny_bert):
    return tiny_bert().eval()


def _inspect(path, capsys, *extra) -> tuple[int, str, str]:
    code = main(["inspect", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_dense_model(model, tmp_path, capsys) -> None:
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "metrics.json").write_text(json.dumps({"stage": "finetune", "seed": 7}))
    code, out, _ = _inspect(tmp_path / "model", capsys, "--json", str(tmp_path / "d.json"))
    assert code == 0
    described = json.loads((tmp_path / "d.json").read_text())
    assert described["kind"] == "dense"
    assert described["provenance"] == {"stage": "finetune", "seed": 7}
    expected = count_parameters(model)
    assert described["parameters"]["total"] == expected["total"]
    assert described["parameters"]["retained_fraction"] == 1.0
    assert "rho: 1.0000" in out and "stage: finetune" in out


def test_sparse_model_counts_its_nonzeros(model, tmp_path, capsys) -> None:
    with torch.no_grad():
        model.get_submodule(QUERY0).weight.view(-1)[:512] = 0.0
    model.save_pretrained(tmp_path / "model")
    code, out, _ = _inspect(tmp_path / "model", capsys, "--modules", "--json", str(tmp_path / "d"))
    assert code == 0
    described = json.loads((tmp_path / "d").read_text())
    assert described["kind"] == "sparse"
    assert described["modules"][QUERY0]["density"] == pytest.approx(0.5)  # 512 of 32x32
    dense = described["parameters"]["targets_dense"]
    assert described["parameters"]["targets_compressed"] == dense - 512
    assert re.search(rf"^{re.escape(QUERY0)} +32x32 +- +0\.5000$", out, re.MULTILINE)


def test_lowrank_model_reports_ranks_and_provenance(model, tmp_path, capsys) -> None:
    swap_to_lowrank(model, {QUERY0: 4, "bert.encoder.layer.1.output.dense": 6})
    save_compressed(model, None, tmp_path / "model", metadata={"method": "svd", "seed": 3})
    code, out, _ = _inspect(tmp_path / "model", capsys, "--json", str(tmp_path / "d"))
    assert code == 0
    described = json.loads((tmp_path / "d").read_text())
    assert described["kind"] == "low-rank"
    assert described["record"] == "lpaf.json"
    assert described["provenance"] == {"method": "svd", "seed": 3}
    assert described["modules"][QUERY0]["rank"] == 4
    assert described["modules"][QUERY0]["compressed"] == 4 * (32 + 32)
    assert "ranks: 2 low-rank modules, rank min 4" in out and "max 6" in out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent", "not a directory"),
        (lambda d: d, "no config.json or lpaf.json: not a model directory"),
        (lambda d: (d / "lpaf.json").write_text("{not json") and d, "corrupt JSON"),
        (lambda d: (d / "config.json").write_text("{}") and d, "cannot load the model"),
    ],
    ids=["missing", "empty", "corrupt-lpaf-json", "bad-config"],
)
def test_not_a_model_is_a_clear_error(tmp_path, capsys, make, message) -> None:
    code, out, err = _inspect(make(tmp_path), capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("lpaf inspect: error: ") and message in err


def test_unknown_argument_is_rejected(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", str(tmp_path), "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
