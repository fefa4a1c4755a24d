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
    if len(train_dataset) == 0:
        raise ValueError("the training set is empty")
    loop = _Loop(model, train_dataset, collator, settings, run, work_dir, device, hooks)
    loop.resume(description)
    return loop.execute(eval_fn, description)


class _Loop:
    """The state of one :func:`train` call (model, optimizer, schedule, hooks, log),
    one method per concern: set-up, resumption, the data order, a step, evaluation,
    checkpointing and the end."""

    def __init__(self, model, train_dataset, collator, settings, run, work_dir, device, hooks):
        self.dataset, self.collator, self.settings, self.run = (
            train_dataset,
            collator,
            settings,
            run,
        )
        self.work_dir, self.device, self.hooks = work_dir, device, hooks
        self.n = len(train_dataset)
        self.steps_per_epoch = math.ceil(self.n / settings.batch_size)
        self.total_steps = settings.max_steps or max(
            1, math.ceil(settings.epochs * self.steps_per_epoch)
        )
        self.state = TrainState(step=0, total_steps=self.total_steps, device=device)
        for hook in hooks:
            model = hook.setup(model, self.state)
        self.model = model.to(device)
        self.optimizer = torch.optim.AdamW(
            _param_groups(model, settings.weight_decay, settings.learning_rate, hooks),
            lr=settings.learning_rate,
        )
        warmup_steps = int(settings.warmup_ratio * self.total_steps)
        self.scheduler = linear_schedule(self.optimizer, warmup_steps, self.total_steps)
        self.rows: list[dict[str, Any]] = []
        self.elapsed_before = 0.0
        self.resumed_from = 0

    def resume(self, description: str) -> None:
        """Continue from the checkpoint in ``work_dir`` if it belongs to this run."""
        checkpoint = _load_checkpoint(self.work_dir)
        if checkpoint is None:
            return
        if checkpoint["total_steps"] != self.total_steps or checkpoint["n_examples"] != self.n:
            log.warning(
                "checkpoint in %s belongs to a different run; starting afresh", self.work_dir
            )
            return
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        for hook, hook_state in zip(self.hooks, checkpoint["hooks"], strict=True):
            hook.load_state_dict(hook_state)
        _set_rng_state(checkpoint["rng"])
        self.rows = checkpoint["log"]
        self.elapsed_before = checkpoint["elapsed"]
        self.state.step = self.resumed_from = checkpoint["step"]
        log.info("resuming %s from step %d of %d", description, self.state.step, self.total_steps)

    def loader_from(self, step: int) -> DataLoader:
        """The batches of the epoch ``step`` falls in, from ``step`` on."""
        size = self.settings.batch_size
        epoch, position = divmod(step, self.steps_per_epoch)
        order = epoch_order(self.n, self.run.seed, epoch)[position * size :].tolist()
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        # A private generator: creating a DataLoader iterator otherwise draws from the
        # global RNG, so a resumed run would shift every later dropout mask.
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=self.collator,
            generator=torch.Generator().manual_seed(self.run.seed),
        )

    def elapsed(self) -> float:
        """Training seconds so far, over every resumption."""
        return self.elapsed_before + time.perf_counter() - self.start

    def step(self, batch) -> dict[str, Any]:
        """One optimizer step on ``batch``; its row of the training log."""
        model, hooks, state = self.model, self.hooks, self.state
        batch = move_batch(batch, self.device)
        extra = {k: v for hook in hooks for k, v in hook.forward_kwargs().items()}
        with autocast(self.device, self.run.precision):
            outputs = model(**batch, **extra)
            loss = outputs.loss
            for hook in hooks:
                loss = hook.loss(batch, outputs, loss, state)
        loss.backward()
        for hook in hooks:
            hook.after_backward(model, state)
        max_norm = self.settings.max_grad_norm
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if max_norm
            else torch.tensor(float("nan"))
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.epoch = state.step / self.steps_per_epoch
        for hook in hooks:
            hook.after_step(model, state)
        row: dict[str, Any] = {
            "step": state.step,
            "epoch": round(state.epoch, 4),
            "loss": float(loss.detach()),
            "task_loss": float(outputs.loss.detach()),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "elapsed_s": round(self.elapsed(), 3),
        }
        for hook in hooks:
            row.update(hook.log_values())
        return row

    def evaluate(self, eval_fn) -> dict[str, float]:
        """``eval_fn`` in eval mode without gradients; the model is left in eval mode."""
        self.model.eval()
        with torch.no_grad():
            return eval_fn(self.model)

    def save_checkpoint(self) -> None:
        _save_checkpoint(
            self.work_dir,
            {
                "step": self.state.step,
                "total_steps": self.total_steps,
                "n_examples": self.n,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "hooks": [h.state_dict() for h in self.hooks],
                "rng": _rng_state(),
                "log": self.rows,
                "elapsed": self.elapsed(),
                "settings": asdict(self.settings),
            },
        )

    def execute(self, eval_fn, description: str) -> TrainResult:
        settings, state, total = self.settings, self.state, self.total_steps
        self.model.train()
        self.start = time.perf_counter()
        bar = tqdm(total=total, initial=state.step, desc=description, mininterval=5, disable=None)
        report_every = max(1, total // 20)
        while state.step < total:
            for batch in self.loader_from(state.step):
                row = self.step(batch)
                is_last = state.step == total
                every = settings.eval_every_steps
                if eval_fn is not None and not is_last and every and state.step % every == 0:
                    row.update({f"eval_{k}": v for k, v in self.evaluate(eval_fn).items()})
                    self.model.train()
                self.rows.append(row)
                bar.update(1)
                if state.step % report_every == 0 or is_last:
                    log.info(
                        "%s step %d/%d loss %.4f lr %.2e",
                        description,
                        state.step,
                        total,
                        row["loss"],
                        row["learning_rate"],
                    )
                every = settings.checkpoint_every_steps
                if every and state.step % every == 0 and not is_last:
                    self.save_checkpoint()
                if is_last:
                    break
        bar.close()
        train_seconds = self.elapsed()
        return self.finish(eval_fn, train_seconds)

    def finish(self, eval_fn, train_seconds: float) -> TrainResult:
        """Let the hooks finalize the model; the final metrics are the finalized
        model's, the one that is saved."""
        for hook in self.hooks:
            self.model = hook.finalize(self.model)
        self.model.eval()
        final_metrics: dict[str, float] = {}
        if eval_fn is not None:
            final_metrics = self.evaluate(eval_fn)
            self.rows[-1].update({f"eval_{k}": v for k, v in final_metrics.items()})
        return TrainResult(
            model=self.model,
            log=pd.DataFrame(self.rows),
            steps=self.total_steps,
            train_seconds=train_seconds,
            resumed_from_step=self.resumed_from,
            final_metrics=final_metrics,
        )
