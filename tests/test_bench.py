"""lpaf.bench: the ratio columns in closed form, and a tiny run in two backends."""

from __future__ import annotations

import pandas as pd
import pytest

from lpaf.accounting import whole_model_macs
from lpaf.bench import add_ratios, benchmark, plot_latency_vs_macs
from lpaf.compressed import save_compressed
from lpaf.factorize.layer import swap_to_lowrank


def test_ratios_against_the_reference_in_the_same_backend() -> None:
    rows = []
    for model, macs, eager, ort in (("dense", 100.0, 10.0, 8.0), ("small", 25.0, 5.0, 2.0)):
        for backend, ms in (("eager", eager), ("onnxruntime", ort)):
            rows.append(
                {
                    "model": model,
                    "macs_per_token": macs,
                    "backend": backend,
                    "precision": "fp32",
                    "batch_size": 32,
                    "latency_ms": ms,
                }
            )
    table = add_ratios(pd.DataFrame(rows), seq_len=8).set_index(["model", "backend"])
    small_eager, small_ort = table.loc[("small", "eager")], table.loc[("small", "onnxruntime")]
    assert small_eager["mac_ratio"] == 0.25
    assert small_eager["latency_ratio"] == 0.5  # 5 / 10, against dense eager
    assert small_ort["latency_ratio"] == 0.25  # 2 / 8, against dense onnxruntime
    assert small_eager["pct_of_arithmetic_speedup"] == 50.0  # 2x of the 4x allowed
    assert small_ort["pct_of_arithmetic_speedup"] == 100.0
    assert small_eager["speedup_vs_dense_onnxruntime"] == 8.0 / 5.0
    assert table.loc[("dense", "eager"), "speedup_vs_dense_onnxruntime"] == 0.8
    assert (table["seq_len"] == 8).all()


def test_tiny_benchmark_in_eager_and_onnxruntime(tiny_bert, tmp_path) -> None:
    dense = tiny_bert(seed=0).eval()
    dense.save_pretrained(tmp_path / "dense")
    small = tiny_bert(seed=0).eval()
    swap_to_lowrank(small, {"bert.encoder.layer.0.intermediate.dense": 4})
    save_compressed(small, None, tmp_path / "small")
    table = benchmark(
        [tmp_path / "dense", tmp_path / "small"],
        ["dense", "small"],
        backends=["eager", "onnxruntime"],
        batch_sizes=[1, 2],
        seq_len=8,
        warmup=0,
        repeats=2,
        log=lambda _: None,
    )
    assert len(table) == 2 * 2 * 2  # models x backends x batch sizes
    assert (table["latency_ms"] > 0).all()
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert (table["allocator"] == ("tuned" if glibc else "default")).all()
    reference = table[table["model"] == "dense"]
    assert (reference["mac_ratio"] == 1.0).all() and (reference["latency_ratio"] == 1.0).all()
    expected = whole_model_macs(small, 8)["total"] / whole_model_macs(dense, 8)["total"]
    assert table.loc[table["model"] == "small", "mac_ratio"].tolist() == pytest.approx(
        [expected] * 4
    )
    plot_latency_vs_macs(table, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_runs_are_timed_in_rounds() -> None:
    """Every round calls each run once, in order (warm-up rounds first), and each
    median is over that run's own timed calls."""
    from lpaf.bench import _timed_rounds

    calls: list[int] = []
    runs = [lambda i=i: calls.append(i) for i in range(3)]
    times = _timed_rounds(runs, warmup=1, repeats=2, cuda=False)
    assert calls == [0, 1, 2] * 3
    assert len(times) == 3 and all(t >= 0 for t in times)


def test_bad_backend_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown backends \\['tensorrt'\\]"):
        benchmark([tmp_path], backends=["tensorrt"])


def test_optimized_rows_count_the_fallback_and_the_fusion(tiny_bert, tmp_path) -> None:
    """With and without lpaf.deploy's rewrites in one run: the fallback of a rank-20
    32x32 module lowers its MACs per token from 20 * 64 to 32 * 32; the fusion of
    layer 0's q/k/v changes no MACs."""
    model = tiny_bert(seed=0).eval()
    self0 = "bert.encoder.layer.0.attention.self."
    ranks = {self0 + "query": 3, self0 + "key": 3, self0 + "value": 3}
    swap_to_lowrank(model, {**ranks, "bert.encoder.layer.1.attention.output.dense": 20})
    save_compressed(model, None, tmp_path / "m")
    table = benchmark(
        [tmp_path / "m"],
        backends=["eager"],
        batch_sizes=[2],
        seq_len=8,
        warmup=0,
        repeats=1,
        optimize=(False, True),
        log=lambda _: None,
    )
    plot_latency_vs_macs(table, tmp_path / "fig.png")  # both variants in one panel
    assert (tmp_path / "fig.png").stat().st_size > 0
    table = table.set_index("optimized")
    assert table.loc[True, "macs_per_token"] == table.loc[False, "macs_per_token"] - (
        20 * 64 - 32 * 32
    )
    assert table.loc[True, "dense_fallback_modules"] == 1
    assert table.loc[True, "fused_qkv_modules"] == 1
    assert table.loc[False, ["dense_fallback_modules", "fused_qkv_modules"]].tolist() == [0, 0]
    assert table.loc[True, "rho"] == table.loc[False, "rho"]  # the saved model's count
