#!/usr/bin/env python
"""Does onnxruntime's offline transformer optimizer make the exported models faster?

python scripts/bench/ort_transformer_optimizer.py DENSE_DIR RANK_R_DIR ... [--batch 32]
[--seq-length 128] [--repeats 10] [--threads 2]

Each saved model directory is loaded with ``lpaf.load_model``, given lpaf.deploy's
inference rewrites, exported by ``lpaf.export.export_model`` and passed through
``onnxruntime.transformers.optimizer.optimize_model`` (``model_type="bert"``). Prints
which fused operators it found, then times the plain and the optimized graph of every
model in rounds (one call of each per round, ``CPUExecutionProvider``, the session's
default graph optimizations on both) and prints the median milliseconds and each
model's ratio against the first model in the same variant.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
from onnxruntime.transformers.optimizer import optimize_model

from lpaf.deploy import optimize_for_inference
from lpaf.export import export_model, input_names, random_inputs
from lpaf.modeling import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ortopt-"))
    files: dict[tuple[str, str], Path] = {}
    for i, path in enumerate(args.models):
        model = load_model(path).eval().float()
        optimize_for_inference(model)
        config = model.config
        plain = tmp / f"m{i}.onnx"
        export_model(model, plain, input_names(model, path))
        optimized = optimize_model(
            str(plain),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        print(f"{path}: fused {fused}")
        optimized.save_model_to_file(str(tmp / f"m{i}-opt.onnx"))
        files[(path, "plain")] = plain
        files[(path, "optimized")] = tmp / f"m{i}-opt.onnx"

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    runners = {}
    for key, file in files.items():
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        names = [inp.name for inp in session.get_inputs()]
        inputs = random_inputs(names, args.batch, args.seq_length, vocab=1000, pad=False)
        feed = {name: tensor.numpy() for name, tensor in inputs.items()}
        runners[key] = (session, feed)
        for _ in range(2):
            session.run(None, feed)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for _ in range(args.repeats):
        for key, (session, feed) in runners.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append(time.perf_counter() - start)
    for variant in ("plain", "optimized"):
        reference = statistics.median(times[(args.models[0], variant)])
        for path in args.models:
            ms = statistics.median(times[(path, variant)])
            print(f"{variant:9s} {ms * 1000:8.1f} ms  ratio {ms / reference:.3f}  {path}")


if __name__ == "__main__":
    main()
