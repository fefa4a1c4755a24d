"""The one training loop every stage of LPAF uses.

Fine-tuning, pruning and recovery all call :func:`train`; what differs between them
is attached through :class:`lpaf.hooks.TrainHook` objects. The loop is plain
PyTorch (``torch.autocast`` for bf16, device chosen once) so that its behaviour is
exactly what is written here:

* seeded and deterministic on CPU: the order of examples in epoch ``e`` is a
  permutation drawn from ``seed`` and ``e`` alone, and dropout draws from the
  global torch generator seeded once;
* AdamW with decoupled weight decay (not on biases and LayerNorm), linear warm-up
  then linear decay to zero, gradient clipping;
* a per-step log (CSV) and evaluation at the end (and every N steps if asked);
* a checkpoint (model, optimizer, scheduler, RNG states, hook states, log so far)
  every N steps in ``work_dir/checkpoint``: a killed run started again with the same
  arguments resumes from it and ends bit-identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lpaf.hooks import TrainHook, TrainState
from lpaf.io import atomic_dir

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainSettings:
    """Optimisation settings of one stage (``finetune:``, ``prune:``, ... in the config)."""

    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs when set
    learning_rate: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    max_train_examples: int | None = None
    eval_every_steps: int | None = None
    checkpoint_every_steps: int | None = 200

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class RunSettings:
    """Where and how a job runs (shared by all stages)."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | auto (resolved by train(), lpaf.precision)
    threads: int | None = None  # torch intra-op threads; None keeps torch's default


@dataclass
class TrainResult:
    model: nn.Module
    log: pd.DataFrame
    steps: int
    train_seconds: float
    resumed_from_step: int = 0
    final_metrics: dict[str, float] = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device: cuda was requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use device: auto or cpu"
        )
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads: torch's intra-op pool (the one that runs GEMMs and
    element-wise kernels) and its inter-op pool, so that ``snakemake --cores N`` with
    several jobs side by side does not oversubscribe the CPU (a job would otherwise
    start a pool of every core's size). The inter-op pool can be sized only before
    its first use in a process; after that it is left as it is."""
    if not threads:
        return
    threads = int(threads)
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # the pool has started: torch allows no change
            log.debug("inter-op threads stay %d", torch.get_num_interop_threads())


def autocast(device: torch.device, precision: str):
    if precision not in ("fp32", "bf16"):
        raise ValueError(
            f"precision must be fp32 or bf16, got {precision!r} "
            "(resolve 'auto' first: lpaf.precision.resolve)"
        )
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )


def move_batch(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _param_groups(
    model: nn.Module, weight_decay: float, learning_rate: float, hooks: Sequence[TrainHook]
) -> list[dict[str, Any]]:
    extra = [g for h in hooks for g in h.param_groups(model)]
    taken = {id(p) for g in extra for p in g["params"]}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in taken:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(
            p
        )
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": learning_rate},
        {"params": no_decay, "weight_decay": 0.0, "lr": learning_rate},
    ]
    return groups + extra


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to each group's lr, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of training examples in ``epoch``: depends on seed and epoch only."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(work_dir: Path, payload: dict[str, Any]) -> None:
    with atomic_dir(work_dir / CHECKPOINT_DIR) as tmp:
        torch.save(payload, tmp / "state.pt")


def _load_checkpoint(work_dir: Path) -> dict[str, Any] | None:
    path = work_dir / CHECKPOINT_DIR / "state.pt"
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def clear_checkpoint(work_dir: str | os.PathLike) -> None:
    shutil.rmtree(Path(work_dir) / CHECKPOINT_DIR, ignore_errors=True)


def train(
    model: nn.Module,
    train_dataset,
    collator: Callable,
    settings: TrainSettings,
    run: RunSettings,
    work_dir: str | os.PathLike,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    hooks: Sequence[TrainHook] = (),
    description: str = "train",
) -> TrainResult:
    """Train ``model`` on ``train_dataset`` (tokenized, with ``labels``).

    ``work_dir`` holds the resumable checkpoint; it is not an output. ``eval_fn``
    maps the model to a metrics dict; it is called every ``eval_every_steps`` and at
    the end (in eval mode, without gradients; it must restore nothing itself).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(run.device)
    configure_threads(run.threads)
    if run.precision == "auto":
        from lpaf.precision import resolve

        run = replace(
            run, precision=resolve("auto", device, getattr(model, "config", None)).precision
        )
    seed_everything(run.seed)

    n = len(train_dataset)
    if n == 0:
        raise ValueError("the training set is empty")
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    warmup_steps = int(settings.warmup_ratio * total_steps)

    state = TrainState(step=0, total_steps=total_steps, device=device)
    for hook in hooks:
        model = hook.setup(model, state)
    model.to(device)
    optimizer = torch.optim.AdamW(
        _param_groups(model, settings.weight_decay, settings.learning_rate, hooks),
        lr=settings.learning_rate,
    )
    scheduler = linear_schedule(optimizer, warmup_steps, total_steps)
    rows: list[dict[str, Any]] = []
    elapsed_before = 0.0

    checkpoint = _load_checkpoint(work_dir)
    resumed_from = 0
    if checkpoint is not None:
        if checkpoint["total_steps"] != total_steps or checkpoint["n_examples"] != n:
            log.warning("checkpoint in %s belongs to a different run; starting afresh", work_dir)
        else:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            for hook, hook_state in zip(hooks, checkpoint["hooks"], strict=True):
                hook.load_state_dict(hook_state)
            _set_rng_state(checkpoint["rng"])
            rows = checkpoint["log"]
            elapsed_before = checkpoint["elapsed"]
            state.step = resumed_from = checkpoint["step"]
            log.info("resuming %s from step %d of %d", description, state.step, total_steps)

    def loader_from(step: int) -> DataLoader:
        epoch, position = divmod(step, steps_per_epoch)
        order = epoch_order(n, run.seed, epoch)[position * settings.batch_size :].tolist()
        batches = [
            order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)
        ]
        # A private generator: creating a DataLoader iterator otherwise draws from the
        # global RNG, so a resumed run would shift every later dropout mask.
        return DataLoader(
            train_dataset,
            batch_sampler=batches,
            collate_fn=collator,
            generator=torch.Generator().manual_seed(run.seed),
        )

    model.train()
    start = time.perf_counter()
    bar = tqdm(total=total_steps, initial=state.step, desc=description, mininterval=5, disable=None)
    final_metrics: dict[str, float] = {}
    report_every = max(1, total_steps // 20)
    while state.step < total_steps:
        for batch in loader_from(state.step):
            batch = move_batch(batch, device)
            with autocast(device, run.precision):
                outputs = model(**batch)
                loss = outputs.loss
                for hook in hooks:
                    loss = hook.loss(batch, outputs, loss, state)
            loss.backward()
            for hook in hooks:
                hook.after_backward(model, state)
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                if settings.max_grad_norm
                else torch.tensor(float("nan"))
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.epoch = state.step / steps_per_epoch
            for hook in hooks:
                hook.after_step(model, state)

            row: dict[str, Any] = {
                "step": state.step,
                "epoch": round(state.epoch, 4),
                "loss": float(loss.detach()),
                "task_loss": float(outputs.loss.detach()),
                "learning_rate": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "elapsed_s": round(elapsed_before + time.perf_counter() - start, 3),
            }
            for hook in hooks:
                row.update(hook.log_values())
            is_last = state.step == total_steps
            if (
                eval_fn is not None
                and not is_last
                and settings.eval_every_steps
                and state.step % settings.eval_every_steps == 0
            ):
                model.eval()
                with torch.no_grad():
                    row.update({f"eval_{k}": v for k, v in eval_fn(model).items()})
                model.train()
            rows.append(row)
            bar.update(1)
            if state.step % report_every == 0 or is_last:
                log.info(
                    "%s step %d/%d loss %.4f lr %.2e",
                    description,
                    state.step,
                    total_steps,
                    row["loss"],
                    row["learning_rate"],
                )
            if (
                settings.checkpoint_every_steps
                and state.step % settings.checkpoint_every_steps == 0
                and not is_last
            ):
                _save_checkpoint(
                    work_dir,
                    {
                        "step": state.step,
                        "total_steps": total_steps,
                        "n_examples": n,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "hooks": [h.state_dict() for h in hooks],
                        "rng": _rng_state(),
                        "log": rows,
                        "elapsed": elapsed_before + time.perf_counter() - start,
                        "settings": asdict(settings),
                    },
                )
            if is_last:
                break
    bar.close()
    train_seconds = elapsed_before + time.perf_counter() - start

    for hook in hooks:
        model = hook.finalize(model)
    model.eval()
    if eval_fn is not None:
        # The reported metrics are those of the finalized model, the one that is saved.
        with torch.no_grad():
            final_metrics = eval_fn(model)
        rows[-1].update({f"eval_{k}": v for k, v in final_metrics.items()})
    model.eval()
    return TrainResult(
        model=model,
        log=pd.DataFrame(rows),
        steps=total_steps,
        train_seconds=train_seconds,
        resumed_from_step=resumed_from,
        final_metrics=final_metrics,
    )
