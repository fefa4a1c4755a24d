"""Latency of saved models in several backends, against their arithmetic.

:func:`benchmark` times every model directory given, in every backend, at every batch
size, all in this one process on one device, so every ratio compares like with like:

* ``eager``: the torch model as loaded (``fp32``, or ``bf16`` through autocast where the
  device supports it);
* ``compile``: ``torch.compile(model, dynamic=False)``, fp32 (its compile time is
  recorded apart and not timed);
* ``onnxruntime``: the model exported by :func:`lpaf.export.export_model` to a
  temporary file and run by an onnxruntime ``InferenceSession`` with the same number of
  threads (CPU execution provider, or CUDA where installed and the device is CUDA).

Every row carries the model's whole-model MAC ratio (:func:`lpaf.accounting.whole_model_macs`
at the benchmark's sequence length against the first model, the dense reference) and
its latency ratio against the reference **in the same backend, precision and batch
size**; ``pct_of_arithmetic_speedup = 100 * mac_ratio / latency_ratio`` is the speedup
reached as a share of what the arithmetic allows. ``speedup_vs_dense_onnxruntime`` is
the model's speedup over the dense model in onnxruntime, the runtime peer.

Every runner (model, rewrite, backend, precision) is built first, and those of a batch
size are then timed in rounds, one call of each per round (:func:`_timed_rounds`), so
that a slow stretch of a shared machine falls on the dense reference and the
compressed models alike. On the CPU the allocator is tuned first
(:func:`lpaf.deploy.tune_cpu_allocator`, column ``allocator``): with glibc's default
every forward pass pays page faults on its large activations, a fixed cost that hides
much of what the smaller GEMMs save.

Each model runs with the inference rewrites of :mod:`lpaf.deploy` (``optimized``
true: dense fallback for factors that cost more than the dense weight, one GEMM for
the attention's three down-projections), without them, or both (``optimize``); its
MACs are counted after the fallback, which lowers them.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from lpaf.accounting import count_parameters, whole_model_macs
from lpaf.targets import DEFAULT_TARGET_PATTERNS

BACKENDS = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "bf16")


def _timed_rounds(runs: Sequence[Callable[[], Any]], warmup: int, repeats: int, cuda: bool):
    """Median wall time in ms of each of ``runs``, timed **in rounds**: every round
    calls each run once, in turn, so a slow stretch of the machine (another process, a
    frequency change) falls on every model alike and the ratios between them hold.
    ``warmup`` untimed rounds first."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(warmup + repeats):
        for j, run in enumerate(runs):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times[j].append(time.perf_counter() - start)
    return [1000 * statistics.median(t) for t in times]


def _inputs(names: Sequence[str], batch: int, seq_len: int, vocab: int) -> dict[str, torch.Tensor]:
    from lpaf.export import random_inputs

    return random_inputs(list(names), batch, seq_len, vocab, seed=0, pad=False)


def _torch_runner(model: nn.Module, inputs: dict, device: torch.device, precision: str):
    from lpaf.train import autocast

    on_device = {k: v.to(device) for k, v in inputs.items()}

    def run() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(**on_device)

    return run


def _ort_session(model: nn.Module, names: list[str], device: torch.device, threads: int, tmp: Path):
    import onnxruntime

    from lpaf.export import export_model

    file = tmp / "model.onnx"
    export_model(model, file, names)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return onnxruntime.InferenceSession(str(file), options, providers=providers)


def bf16_supported(device: torch.device, model_config: Any) -> bool:
    """bf16 autocast is timed where ``precision: auto`` would pick it
    (:func:`lpaf.precision.resolve`: native on the CUDA device, or measured faster on
    this CPU); elsewhere it is emulated, tens of times slower, and says nothing about
    the model."""
    from lpaf.precision import resolve

    return resolve("auto", device, model_config).precision == "bf16"


def benchmark(
    model_dirs: Sequence[str | os.PathLike],
    labels: Sequence[str] | None = None,
    *,
    backends: Sequence[str] = BACKENDS,
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1, 32),
    seq_len: int = 128,
    warmup: int = 3,
    repeats: int = 10,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    optimize: Sequence[bool] = (True,),
    tune_allocator: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """One row per model, inference rewrite, backend, precision and batch size (module
    docstring). The first directory is the dense reference of every ratio.
    ``optimize``: with (``True``) and/or without (``False``) the rewrites of
    :func:`lpaf.deploy.optimize_for_inference`; column ``optimized``.
    ``tune_allocator``: on the CPU, :func:`lpaf.deploy.tune_cpu_allocator` first
    (process-wide; column ``allocator`` says whether it is in effect)."""
    from lpaf.describe import load_saved
    from lpaf.export import input_names

    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ValueError(f"unknown backends {unknown}; known: {list(BACKENDS)}")
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad:
        raise ValueError(f"unknown precisions {bad}; known: {list(PRECISIONS)}")
    if not model_dirs:
        raise ValueError("benchmark needs at least one model directory (the dense reference)")
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    labels = list(labels) if labels is not None else [str(p) for p in model_dirs]
    from lpaf.deploy import (
        allocator_tuned,
        dense_fallback,
        fuse_attention_downs,
        tune_cpu_allocator,
    )

    if tune_allocator and device.type == "cpu":
        tune_cpu_allocator()
    if "compile" in backends:  # one graph per model and batch size, all kept at once
        # (otherwise dynamo stops compiling after 8 and runs the rest in eager)
        graphs = len(model_dirs) * len(optimize) * len(batch_sizes) + 8
        for name in ("recompile_limit", "accumulated_recompile_limit"):
            current = getattr(torch._dynamo.config, name, None)
            if current is not None:
                setattr(torch._dynamo.config, name, max(current, graphs))
    rows: list[dict[str, Any]] = []
    runs: list[Callable[[], Any]] = []
    with tempfile.TemporaryDirectory(prefix="lpaf-bench-") as tmp:
        # build every (model, rewrite, backend, precision, batch) runner, then time
        # them all in rounds (_timed_rounds)
        for index, ((label, path), optimized) in enumerate(
            itertools.product(zip(labels, model_dirs, strict=True), optimize)
        ):
            model = load_saved(path).float().eval().to(device)
            params = count_parameters(model, DEFAULT_TARGET_PATTERNS)  # as saved
            # MACs counted after the dense fallback (it lowers them) and before the
            # fusion (it does not change them, and renames the attention's modules)
            rewrites = {"dense_fallback": dense_fallback(model) if optimized else []}
            names = input_names(model, path)
            vocab = int(getattr(model.config, "vocab_size", 100))
            macs = whole_model_macs(model, seq_len, DEFAULT_TARGET_PATTERNS)
            dense_kernel = whole_model_macs(
                model, seq_len, DEFAULT_TARGET_PATTERNS, sparse_kernel=False
            )
            rewrites["fused_qkv_down"] = fuse_attention_downs(model) if optimized else []
            base = {
                "model": label,
                "rho": params["retained_fraction"],
                "macs_per_token": macs["total"],
                "macs_per_token_dense_kernel": dense_kernel["total"],
                "optimized": bool(optimized),
                "dense_fallback_modules": len(rewrites.get("dense_fallback", [])),
                "fused_qkv_modules": len(rewrites.get("fused_qkv_down", [])),
            }
            for backend in backends:
                for precision in precisions:
                    if precision == "bf16" and not (
                        backend == "eager" and bf16_supported(device, model.config)
                    ):
                        log(f"{label}: {backend} bf16 skipped (fp32 only; see bf16_supported)")
                        continue
                    session = compiled = None
                    setup = time.perf_counter()
                    if backend == "onnxruntime":
                        folder = Path(tmp) / str(index)
                        folder.mkdir(exist_ok=True)
                        session = _ort_session(model, names, device, threads, folder)
                    elif backend == "compile":
                        compiled = torch.compile(model, dynamic=False)
                    setup = time.perf_counter() - setup
                    for batch in batch_sizes:
                        inputs = _inputs(names, batch, seq_len, vocab)
                        if backend == "onnxruntime":
                            feed = {k: v.numpy() for k, v in inputs.items()}
                            run = lambda s=session, f=feed: s.run(None, f)  # noqa: E731
                            extra = 0.0
                        else:
                            runner = compiled if backend == "compile" else model
                            run = _torch_runner(runner, inputs, device, precision)
                            extra = time.perf_counter()
                            run()  # compiles this shape (untimed), or a plain warm-up
                            extra = time.perf_counter() - extra
                        runs.append(run)
                        rows.append(
                            {
                                **base,
                                "backend": backend,
                                "precision": precision,
                                "batch_size": batch,
                                "setup_s": setup + (extra if backend == "compile" else 0.0),
                            }
                        )
        for batch in batch_sizes:  # a batch size's runners share rounds
            chosen = [i for i, row in enumerate(rows) if row["batch_size"] == batch]
            times = _timed_rounds([runs[i] for i in chosen], warmup, repeats, device.type == "cuda")
            for i, ms in zip(chosen, times, strict=True):
                rows[i]["latency_ms"] = ms
                row = rows[i]
                log(
                    f"{row['model']}: {row['backend']} {row['precision']} batch {batch}: "
                    f"{ms:.2f} ms (MACs/token {row['macs_per_token']:.3g})"
                )
        runs.clear()
    constants = {"seq_len": seq_len, "threads": threads, "device": str(device)}
    constants["allocator"] = "tuned" if allocator_tuned() else "default"
    return add_ratios(pd.DataFrame(rows), **constants)


def add_ratios(table: pd.DataFrame, **constants: Any) -> pd.DataFrame:
    """The ratio columns of the module docstring, against the first model of
    ``table`` (the reference) in the same backend, precision and batch size."""
    if table.empty:
        return table
    reference = table["model"].iloc[0]
    keys = ["backend", "precision", "batch_size"]
    if "optimized" in table:
        keys.append("optimized")
    ref = table.loc[table["model"] == reference, [*keys, "latency_ms", "macs_per_token"]]
    ref = ref.rename(columns={"latency_ms": "ref_ms", "macs_per_token": "ref_macs"})
    joined = table[keys].merge(ref, on=keys, how="left")
    table = table.copy()
    table["mac_ratio"] = table["macs_per_token"].to_numpy() / joined["ref_macs"].to_numpy()
    table["latency_ratio"] = table["latency_ms"].to_numpy() / joined["ref_ms"].to_numpy()
    table["pct_of_arithmetic_speedup"] = 100 * table["mac_ratio"] / table["latency_ratio"]
    peer = table[(table["model"] == reference) & (table["backend"] == "onnxruntime")]
    if "optimized" in peer and peer["optimized"].nunique() > 1:
        peer = peer[~peer["optimized"]]  # the dense model as loaded is the peer
    peer = peer.set_index(["precision", "batch_size"])["latency_ms"]
    if len(peer):
        fp32_peer = table["batch_size"].map({b: ms for (p, b), ms in peer.items() if p == "fp32"})
        table["speedup_vs_dense_onnxruntime"] = fp32_peer / table["latency_ms"]
    for key, value in constants.items():
        table[key] = value
    return table


def plot_latency_vs_macs(table: pd.DataFrame, png_path: str | Path, pdf_path=None) -> None:
    """Latency ratio against MAC ratio, one panel per batch size, one marker per
    backend (fp32); the diagonal is the arithmetic limit (latency falls as the
    multiply-accumulates do), points above it fall short of it."""
    from lpaf.figures import plt, save_figure

    fp32 = table[table["precision"] == "fp32"]
    batches = sorted(fp32["batch_size"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.8), squeeze=False)
    markers = {"eager": "o", "compile": "s", "onnxruntime": "^"}
    for ax, batch in zip(axes[0], batches, strict=True):
        part = fp32[fp32["batch_size"] == batch]
        both = "optimized" in part and part["optimized"].nunique() > 1
        keys = ["backend", "optimized"] if both else ["backend"]
        for key, rows in part.groupby(keys, sort=False):
            backend = key[0] if isinstance(key, tuple) else key
            plain = both and not key[1]
            ax.scatter(
                rows["mac_ratio"],
                rows["latency_ratio"],
                marker=markers.get(backend, "x"),
                label=f"{backend}{' (no rewrites)' if plain else ''}",
                alpha=0.4 if plain else 0.8,
            )
        top = max(1.05, float(part["latency_ratio"].max()) * 1.05)
        ax.plot([0, 1.05], [0, 1.05], color="grey", linestyle="--", label="arithmetic limit")
        ax.set_xlim(0, 1.05)
        ax.set_ylim(0, top)
        ax.set_xlabel("whole-model MAC ratio (vs dense)")
        ax.set_ylabel("latency ratio (vs dense, same backend)")
        ax.set_title(f"batch {batch}, length {int(part['seq_len'].iloc[0])}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)


def run_rule(
    config: dict[str, Any],
    records: Sequence[dict[str, Any]],
    csv_path: str | Path,
    png_path: str | Path,
    pdf_path: str | Path | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The ``bench`` rule: :func:`benchmark` per task over the model directories of
    ``records`` (study records of ``evaluation.json``, the reference first), with the
    settings of ``config['evaluate']``; one CSV for every task, one figure."""
    import logging

    from lpaf import runtime
    from lpaf.evaluate.config import EvaluateConfig
    from lpaf.evaluate.stage import latency_seq_length
    from lpaf.io import write_dataframe
    from lpaf.tasks import get_task

    log = logging.getLogger(__name__)
    settings = config["evaluate"]
    evaluate_settings = EvaluateConfig.from_config(config)
    device = runtime.start_job(config, runtime.Job(task="", threads=threads))
    tables = []
    for task in dict.fromkeys(r["task"] for r in records):
        rows = [r for r in records if r["task"] == task]
        table = benchmark(
            [str(Path(r["path"]).parent / "model") for r in rows],
            [f"{r['pipeline']} rho {r['rho']:g}" for r in rows],
            backends=settings["latency_backends"],
            precisions=PRECISIONS,
            batch_sizes=settings["latency_batch_sizes"],
            # the task's own length, as in evaluate (a QA model runs on its windows)
            seq_len=latency_seq_length(config, get_task(task), evaluate_settings),
            warmup=settings["latency_warmup"],
            repeats=settings["latency_repeats"],
            device=device,
            log=log.info,
        )
        by_label = {f"{r['pipeline']} rho {r['rho']:g}": r for r in rows}
        table.insert(0, "task", task)
        for position, key, column in ((1, "pipeline", "pipeline"), (2, "rho", "rho_target")):
            table.insert(position, column, [by_label[m][key] for m in table["model"]])
        table.insert(3, "seed", [by_label[m]["seed"] for m in table["model"]])
        tables.append(table)
    result = pd.concat(tables, ignore_index=True)
    write_dataframe(csv_path, result)
    plot_latency_vs_macs(result, png_path, pdf_path)
    return result
