"""Stage 2 (rule ``prune``): unstructured pruning of the target matrices to a density
with one method during training (cubic schedule, :class:`lpaf.prune.PruningHook`),
optionally distilling from the fine-tuned teacher.

Stage 3 (:mod:`lpaf.rank.stage`) and stage 4 read the run's ``masks.safetensors`` and
``importance.safetensors``; their keys are the target module names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lpaf.distill import DistillationHook
from lpaf.io import atomic_dir, save_tensors, write_dataframe
from lpaf.modeling import load_for_task, load_model, load_tokenizer
from lpaf.prune.config import PruneConfig
from lpaf.prune.hook import PruningHook
from lpaf.prune.layer import keep_count
from lpaf.runtime import Job, TrainingStage
from lpaf.sources import label
from lpaf.targets import find_targets
from lpaf.tasks import get_task
from lpaf.train import TrainSettings


@dataclass(frozen=True)
class Outputs:
    """``results/{model}/{task}/prune/{method}/density{d}/seed{seed}/``."""

    model: str
    masks: str
    importance: str
    metrics: str
    train_log: str
    densities: str


def prune_config_from(config: dict[str, Any], method: str, density: float) -> PruneConfig:
    """The :class:`PruneConfig` of one run of the config's ``prune`` block."""
    return PruneConfig.from_config(config, method, density)


def expected_kept(shapes: dict[str, tuple[int, int]], density: float, threshold: str) -> int:
    """Target weights a finished pruning run keeps: ``round(density * numel)`` per
    matrix (``per_matrix``) or over all targets at once (``global``)."""
    sizes = [rows * cols for rows, cols in shapes.values()]
    if threshold == "global":
        return keep_count(density, sum(sizes))
    return sum(keep_count(density, n) for n in sizes)


def run(
    config: dict[str, Any], job: Job, method: str, density: float, teacher: str, out: Outputs
) -> dict[str, Any]:
    """Prune to ``density`` with ``method``, starting from the teacher in ``teacher``
    (``prune.init: finetuned``) or from ``config['model']`` with a fresh head
    (``pretrained``). Writes ``out.model`` (a plain Hugging Face model with the masks
    baked into its weights), ``out.masks`` (boolean, 1 = kept), ``out.importance``
    (float32: movement scores, EMA of ``|W*G|`` or ``|W|``), ``out.train_log``,
    ``out.densities`` (achieved density of every target) and, last, ``out.metrics``.
    Fails if the achieved density is not the target to the nearest weight."""
    density = float(density)
    block = config["prune"]
    settings = TrainSettings.from_dict(block)
    tokenizer = load_tokenizer(str(teacher))
    if block["init"] == "finetuned":
        model = load_model(teacher)
    else:
        model, _ = load_for_task(config["model"], get_task(job.task), seed=int(job.seed))
    stage = TrainingStage(config, job, settings, model, tokenizer)

    prune_config = prune_config_from(config, method, density)
    pruning = PruningHook(prune_config)
    hooks: list = [pruning]
    distill = block["distillation"]
    teacher_model = load_model(teacher)  # distilled from, and the curves' reference
    if distill["enabled"]:
        hooks.append(DistillationHook.from_config(teacher_model, distill))
    result = stage.train(
        Path(out.metrics).parent,
        hooks,
        f"prune {method} density {density:g} {stage.task.name} seed {job.seed}",
        teacher=teacher_model,
    )
    masks, importance = pruning.masks(), pruning.importance()
    per_target = check_density(stage.model, config["target_modules"], masks, prune_config)

    per_split, _ = stage.evaluate()
    with atomic_dir(out.model) as tmp:
        stage.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    meta = {"method": method, "density": label(density), "threshold": prune_config.threshold}
    save_tensors(out.masks, {n: m.bool() for n, m in masks.items()}, {**meta, "kind": "mask"})
    save_tensors(
        out.importance,
        {n: t.float() for n, t in importance.items()},
        {**meta, "kind": "importance"},
    )
    write_dataframe(out.train_log, result.log)
    write_dataframe(out.densities, per_target)
    kept, total = int(per_target["kept"].sum()), int(per_target["numel"].sum())
    head = {
        "stage": "prune",
        "task": stage.task.name,
        "model": config["model"],
        "teacher": str(teacher),
        "seed": int(job.seed),
        "method": method,
        "target_density": density,
        "achieved_density": kept / total,
        "kept_weights": kept,
        "target_weights": total,
        "nonzero_weights": int(per_target["nonzeros"].sum()),
    }
    prune_record = {
        **{k: v for k, v in vars(prune_config).items() if k != "target_patterns"},
        "target_patterns": list(prune_config.target_patterns),
        "init": block["init"],
        "distillation": dict(distill),
        "warmup_steps": list(pruning.warmup_steps(result.steps)),
    }
    return stage.finish(
        out.metrics, {**head, **stage.common_metrics(per_split), "prune": prune_record}
    )


def check_density(model, patterns, masks, prune_config: PruneConfig) -> pd.DataFrame:
    """One row per target (shape, kept, density, non-zeros) after checking that the
    run kept exactly the weights its density asks for and zeroed every pruned one."""
    targets = find_targets(model, patterns)
    shapes = {name: tuple(m.weight.shape) for name, m in targets.items()}
    if set(masks) != set(shapes):
        raise RuntimeError(f"masks name {sorted(masks)[:3]}..., targets {sorted(shapes)[:3]}...")
    total = sum(r * c for r, c in shapes.values())
    kept = sum(int(mask.sum()) for mask in masks.values())
    density = prune_config.final_density
    want = expected_kept(shapes, density, prune_config.threshold)
    if kept != want:
        raise RuntimeError(
            f"pruning kept {kept} of {total} target weights, the target density {density} "
            f"asks for {want}: the schedule did not end at the final density"
        )
    rows = []
    for name, module in targets.items():
        weight = module.weight.detach().cpu()
        mask = masks[name]
        if int((weight[~mask] != 0).sum()) != 0:
            raise RuntimeError(f"{name}: pruned weights are not zero in the saved model")
        rows.append(
            {
                "name": name,
                "rows": weight.shape[0],
                "cols": weight.shape[1],
                "numel": weight.numel(),
                "kept": int(mask.sum()),
                "density": int(mask.sum()) / weight.numel(),
                "nonzeros": int((weight != 0).sum()),
            }
        )
    return pd.DataFrame(rows)
