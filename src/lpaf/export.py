"""ONNX export of any saved model directory: ``lpaf export-onnx MODEL_DIR OUT``.

Dense, pruned and compressed (low-rank) models alike: the model is loaded with
:func:`lpaf.load_model` (so a compressed model exports as its two factors per module,
``down`` then ``up``, not as a re-multiplied dense weight), cast to float32 and exported
with ``torch.onnx.export`` (the ``torch.export``-based exporter, ``dynamo=True``) with a
dynamic batch and sequence length. The graph's inputs are the tokenizer's model inputs
(``input_ids``, ``attention_mask`` and, for BERT-like models, ``token_type_ids``), int64;
its outputs are the model's (``logits`` for sequence classification).

After writing, the export is checked: onnxruntime runs the file on a random batch whose
shape differs from the one traced (with padding in the attention mask) and every output
must match torch's to ``atol``; a mismatch removes nothing but raises
:class:`ExportError` (the file is written atomically, so a failed export leaves no
file behind). Needs the ``onnx`` extra (``pip install -e .[onnx]``: onnx, onnxscript,
onnxruntime).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpaf.io import atomic_path

DEFAULT_ATOL = 1e-4
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(Exception):
    """The model cannot be exported, or the exported graph disagrees with torch."""


def _require_onnx() -> Any:
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs the onnx extra ({error.name} is not installed): "
            "pip install -e '.[onnx]'"
        ) from error
    return onnxruntime


def input_names(model: nn.Module, path: str | os.PathLike | None = None) -> list[str]:
    """The inputs the graph takes: the saved tokenizer's ``model_input_names`` when the
    directory has one, else those of ``input_ids, attention_mask, token_type_ids``
    the model's ``forward`` accepts (``token_type_ids`` only with ``type_vocab_size``)."""
    accepted = set(inspect.signature(model.forward).parameters)
    names: list[str] | None = None
    if path is not None and (Path(path) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        names = list(AutoTokenizer.from_pretrained(str(path)).model_input_names)
    if names is None:
        names = [n for n in _INPUTS if n != "token_type_ids"]
        if getattr(getattr(model, "config", None), "type_vocab_size", 0):
            names.append("token_type_ids")
    return [n for n in _INPUTS if n in names and n in accepted]


def random_inputs(
    names: list[str], batch: int, seq_len: int, vocab: int, seed: int = 0, pad: bool = True
) -> dict[str, torch.Tensor]:
    """Random int64 inputs; with ``pad`` the first row's last third is padding."""
    generator = torch.Generator().manual_seed(seed)
    inputs: dict[str, torch.Tensor] = {}
    ids = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    for name in names:
        if name == "input_ids":
            inputs[name] = ids
        elif name == "attention_mask":
            mask = torch.ones_like(ids)
            if pad and seq_len > 2:
                mask[0, seq_len - seq_len // 3 :] = 0
            inputs[name] = mask
        else:
            inputs[name] = torch.zeros_like(ids)
            inputs[name][:, seq_len // 2 :] = 1
    return inputs


def _outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        result = model(**inputs, return_dict=True)
    return {k: v for k, v in result.items() if isinstance(v, torch.Tensor)}


def export_model(
    model: nn.Module,
    out: str | os.PathLike,
    names: list[str],
    *,
    atol: float = DEFAULT_ATOL,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export ``model`` (a transformers model, possibly compressed) to the ONNX file
    ``out`` taking the inputs ``names``; check it in onnxruntime (module docstring).
    Returns ``{"file", "inputs", "outputs", "max_abs_diff", "check_shape", "opset"}``."""
    onnxruntime = _require_onnx()
    model = model.float().eval().cpu()
    vocab = int(getattr(model.config, "vocab_size", 100))
    traced = random_inputs(names, batch=2, seq_len=16, vocab=vocab, seed=0)
    output_names = list(_outputs(model, traced))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: seq} for name in names}
    out = Path(out)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_logger = logging.getLogger("torch.onnx")
        level = onnx_logger.level
        onnx_logger.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                model,
                (),
                kwargs=traced,
                input_names=names,
                output_names=output_names,
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            program.save(str(tmp))
        except Exception as error:  # the exporter raises many kinds
            raise ExportError(
                f"torch.onnx.export failed for {type(model).__name__}: {error}"
            ) from error
        finally:
            onnx_logger.setLevel(level)
        check = random_inputs(names, batch=3, seq_len=11, vocab=vocab, seed=1)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(output_names, {k: v.numpy() for k, v in check.items()})
        expected = _outputs(model, check)
        diff = max(
            float(np.max(np.abs(g - expected[n].numpy())))
            for n, g in zip(output_names, got, strict=True)
        )
        if not diff <= atol:
            raise ExportError(
                f"onnxruntime's outputs differ from torch's by {diff:.3g} (> atol {atol:g}) "
                f"on a batch of shape {tuple(check['input_ids'].shape)}; nothing was written"
            )
        used_opset = max(
            (o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")),
            default=None,
        )
    return {
        "file": str(out),
        "inputs": names,
        "outputs": output_names,
        "max_abs_diff": diff,
        "check_shape": list(check["input_ids"].shape),
        "opset": used_opset,
    }


def export_onnx(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    atol: float = DEFAULT_ATOL,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export the saved model directory ``model_dir`` (dense, pruned or compressed) to
    the ONNX file ``out``; see :func:`export_model`. Unreadable directories raise
    :class:`lpaf.describe.NotAModelError` before any export work."""
    from lpaf.describe import load_saved

    _require_onnx()
    model = load_saved(model_dir)
    return export_model(model, out, input_names(model, model_dir), atol=atol, opset=opset)
