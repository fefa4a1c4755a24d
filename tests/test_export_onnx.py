"""ONNX export of tiny dense, sparse and low-rank models: onnxruntime against torch."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from lpaf.cli import main
from lpaf.compressed import save_compressed
from lpaf.export import ExportError, export_model, random_inputs
from lpaf.factorize.layer import swap_to_lowrank
from lpaf.modeling import load_model

QUERY0 = "bert.encoder.layer.0.attention.self.query"


def _save(kind: str, tiny_bert, path):
    model = tiny_bert(seed=1).eval()
    if kind == "sparse":
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) and module.out_features >= 32:
                    weight = module.weight
                    weight[weight.abs() < weight.abs().median()] = 0.0
        model.save_pretrained(path)
    elif kind == "low-rank":
        swap_to_lowrank(model, {QUERY0: 4, "bert.encoder.layer.1.intermediate.dense": 5})
        save_compressed(model, None, path, metadata={"method": "svd"})
    else:
        model.save_pretrained(path)


@pytest.mark.parametrize("kind", ["dense", "sparse", "low-rank"])
def test_onnxruntime_matches_torch(kind, tiny_bert, tmp_path, capsys) -> None:
    _save(kind, tiny_bert, tmp_path / "model")
    out = tmp_path / "model.onnx"
    assert main(["export-onnx", str(tmp_path / "model"), str(out)]) == 0
    assert "onnxruntime matches torch" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    if kind == "low-rank":  # the factors are in the graph, not a re-multiplied weight
        import onnx

        shapes = {tuple(t.dims) for t in onnx.load(str(out)).graph.initializer}
        assert (4, 32) in shapes or (32, 4) in shapes
    model = load_model(tmp_path / "model")
    # a shape and seed the export's own check did not use, with padding and segments
    for batch, seq in ((1, 5), (4, 23)):
        inputs = random_inputs(names, batch, seq, vocab=100, seed=7)
        (got,) = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            expected = model(**inputs).logits.numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # segments matter, so the graph really reads token_type_ids
    inputs = random_inputs(names, 2, 9, vocab=100, seed=3)
    flipped = {**inputs, "token_type_ids": 1 - inputs["token_type_ids"]}
    a = session.run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
    b = session.run(["logits"], {k: v.numpy() for k, v in flipped.items()})[0]
    assert np.abs(a - b).max() > 1e-4


def test_failed_check_leaves_no_file(tiny_bert, tmp_path) -> None:
    model = tiny_bert().eval()
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="nothing was written"):
        export_model(model, out, ["input_ids", "attention_mask"], atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_not_a_model_directory(tmp_path, capsys) -> None:
    assert main(["export-onnx", str(tmp_path), str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpaf export-onnx: error: ") and "not a model directory" in err
    assert not (tmp_path / "x.onnx").exists()
