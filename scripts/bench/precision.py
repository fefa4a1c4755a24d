"""fp32 against bf16 autocast on this CPU: a real training step (forward, backward,
AdamW) and a forward pass of the configured model at the default run's shapes, in one
process, the two precisions alternating; and what `precision: auto` chose here.

    .venv/bin/python scripts/bench/precision.py [--model minilm-l6] [--batch 32] \
        [--length 128] [--steps 3] [--threads 2] [--out docs/measurements/x.json]

To see what a CPU without native bf16 does, limit torch's and oneDNN's kernels to AVX2
(this emulates an AVX2-only CPU such as AMD Zen 3 on a newer one):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/bench/precision.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed repeats of each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from lpaf.modeling import load_for_task
    from lpaf.precision import cpu_capability, resolve
    from lpaf.tasks import get_task
    from lpaf.train import autocast, configure_threads

    configure_threads(args.threads)
    device = torch.device("cpu")
    model, _ = load_for_task(args.model, get_task("MRPC"), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    batch = {
        "input_ids": torch.randint(0, vocab, (args.batch, args.length), generator=generator),
        "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long),
        "labels": torch.randint(0, 2, (args.batch,), generator=generator),
    }

    def train_step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(device, precision):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    @torch.no_grad()
    def forward(precision: str) -> float:
        start = time.perf_counter()
        with autocast(device, precision):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return time.perf_counter() - start

    results = {}
    for name, fn in (("train_step", train_step), ("forward", forward)):
        times = {"fp32": [], "bf16": []}
        for i in range(args.steps + 1):  # the first of each is warm-up
            for precision in ("fp32", "bf16"):
                seconds = fn(precision)
                if i:
                    times[precision].append(seconds)
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        results[name] = {
            "fp32_s": round(fp32, 4),
            "bf16_s": round(bf16, 4),
            "bf16_over_fp32": round(bf16 / fp32, 3),
            "fp32_all": [round(t, 4) for t in times["fp32"]],
            "bf16_all": [round(t, 4) for t in times["bf16"]],
        }
        print(
            f"{name:>10}: fp32 {fp32:.3f} s, bf16 autocast {bf16:.3f} s "
            f"(bf16 / fp32 = {bf16 / fp32:.2f})"
        )
    choice = resolve("auto", device, model.config, use_cache=False)
    print(f"precision: auto -> {choice.precision} ({choice.reason})")
    record = {
        "model": args.model,
        "batch": args.batch,
        "length": args.length,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        **results,
        "auto": choice.record(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
