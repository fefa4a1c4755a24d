"""Per-step cost of movement pruning against plain fine-tuning, measured in one run.

Every variant trains its own copy of the same model on the same batches, in the same
hook order as :func:`lpaf.train.train` (forward, hook losses, backward,
``after_backward``, clipping, optimizer step, ``after_step``). The variants take turns
step by step (round robin), so a change in machine load hits all of them alike. The
first ``--warmup`` steps are not timed; the median (and quartiles) of the rest is
reported, with each variant's ratio to plain fine-tuning, for wall time and for the
process's CPU time (the latter is the steadier number on a shared machine).

Variants: ``finetune`` (no hook), ``movement`` (PruningHook, learned scores),
``movement_kd`` (plus logit distillation from a frozen teacher: one more forward per
step, the prune rule's default), ``magnitude`` (PruningHook on |W|, for reference).
Masks are updated every ``--mask-update-interval`` steps at a fixed schedule position
(a cubic schedule over ``--schedule-steps`` steps, so mask updates happen at the rate a
real run has).

    python scripts/bench/prune_step_cost.py --model minilm-l6 --task MRPC \
        --steps 30 --warmup 5 --out docs/measurements/prune_step_cost

writes ``<out>.csv`` (one row per variant) and ``<out>.json`` (settings, environment,
raw step times).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from lpaf.distill import DistillationHook  # noqa: E402
from lpaf.hooks import TrainState  # noqa: E402
from lpaf.prune import PruneConfig, PruningHook  # noqa: E402
from lpaf.runtime import environment_info  # noqa: E402
from lpaf.train import (  # noqa: E402
    _param_groups,
    autocast,
    configure_threads,
    move_batch,
    resolve_device,
    seed_everything,
)

VARIANTS = ("finetune", "movement", "movement_kd", "magnitude")


def make_batches(args, tokenizer, task):
    from lpaf.data import collator, load_task, tokenize

    data = load_task(task, source="local", local_dir=str(args.data_dir))
    train = tokenize(data["train"], tokenizer, task, args.max_seq_length)
    collate = collator(tokenizer)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train), generator=generator).tolist()
    n = args.steps * args.batch_size
    batches = []
    for i in range(0, n, args.batch_size):
        idx = [order[j % len(order)] for j in range(i, i + args.batch_size)]
        batches.append(collate([train[k] for k in idx]))
    return batches


class Variant:
    def __init__(self, name, base_model, teacher, args, device):
        self.name = name
        self.model = copy.deepcopy(base_model)
        self.hooks = []
        if name != "finetune":
            method = "magnitude" if name == "magnitude" else "movement"
            self.hooks.append(
                PruningHook(
                    PruneConfig(
                        method=method,
                        final_density=args.density,
                        initial_warmup=0.0,
                        final_warmup=0.0,
                        mask_update_interval=args.mask_update_interval,
                    )
                )
            )
        if name == "movement_kd":
            self.hooks.append(DistillationHook(copy.deepcopy(teacher), 2.0, 0.5))
        self.state = TrainState(step=0, total_steps=args.schedule_steps, device=device)
        for hook in self.hooks:
            self.model = hook.setup(self.model, self.state)
        self.model.to(device).train()
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, 0.01, args.learning_rate, self.hooks), lr=args.learning_rate
        )
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU time (all threads) per step

    def step(self, batch, device, precision):
        start = time.perf_counter()
        cpu_start = time.process_time()
        batch = move_batch(batch, device)
        with autocast(device, precision):
            outputs = self.model(**batch)
            loss = outputs.loss
            for hook in self.hooks:
                loss = hook.loss(batch, outputs, loss, self.state)
        loss.backward()
        for hook in self.hooks:
            hook.after_backward(self.model, self.state)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        for hook in self.hooks:
            hook.after_step(self.model, self.state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.times.append(time.perf_counter() - start)
        self.cpu_times.append(time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm-l6", help="alias, model dir or hub id")
    parser.add_argument("--task", default="MRPC")
    parser.add_argument(
        "--data-dir", default=Path(__file__).resolve().parents[2] / "resources/glue"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=30, help="steps per variant, warm-up included")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--density", type=float, default=0.3)
    parser.add_argument("--mask-update-interval", type=int, default=10)
    parser.add_argument("--schedule-steps", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/measurements/prune_step_cost")
    args = parser.parse_args()
    if args.warmup >= args.steps:
        parser.error("--warmup must be smaller than --steps")

    from lpaf.modeling import load_for_task
    from lpaf.tasks import get_task

    configure_threads(args.threads)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    task = get_task(args.task)
    base_model, tokenizer = load_for_task(args.model, task, seed=args.seed)
    teacher = copy.deepcopy(base_model).eval()
    batches = make_batches(args, tokenizer, task)
    variants = [Variant(name, base_model, teacher, args, device) for name in args.variants]
    wall = time.perf_counter()
    for i, batch in enumerate(batches):
        for variant in variants:  # round robin: same batch, one step each
            seed_everything(args.seed + i)  # same dropout draws for every variant
            variant.step(batch, device, args.precision)
        print(
            f"step {i + 1}/{len(batches)}: "
            + ", ".join(f"{v.name} {1000 * v.times[-1]:.0f} ms" for v in variants),
            flush=True,
        )
    wall = time.perf_counter() - wall

    rows = []
    for variant in variants:
        timed = variant.times[args.warmup :]
        q = statistics.quantiles(timed, n=4) if len(timed) > 1 else [timed[0]] * 3
        rows.append(
            {
                "variant": variant.name,
                "timed_steps": len(timed),
                "median_ms": 1000 * statistics.median(timed),
                "p25_ms": 1000 * q[0],
                "p75_ms": 1000 * q[2],
                "mean_ms": 1000 * statistics.fmean(timed),
                # CPU seconds of this process per step: less sensitive than wall time
                # to other processes competing for the cores
                "median_cpu_ms": 1000 * statistics.median(variant.cpu_times[args.warmup :]),
            }
        )
    table = pd.DataFrame(rows)
    if "finetune" in set(table["variant"]):
        base = table.set_index("variant").loc["finetune", "median_ms"]
        table["ratio_to_finetune"] = table["median_ms"] / base
        base_cpu = table.set_index("variant").loc["finetune", "median_cpu_ms"]
        table["cpu_ratio_to_finetune"] = table["median_cpu_ms"] / base_cpu
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    payload = {
        "settings": settings,
        "environment": environment_info(device),
        "wall_seconds": wall,
        "mean_padded_length": statistics.fmean(b["input_ids"].shape[1] for b in batches),
        "results": table.to_dict("records"),
        "step_seconds": {v.name: v.times for v in variants},
        "step_cpu_seconds": {v.name: v.cpu_times for v in variants},
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
