"""Stage 2 of LPAF: unstructured pruning of the target matrices during training.

Everything here plugs into the one training loop through :class:`lpaf.hooks.TrainHook`:

* :class:`PruningHook` swaps every target ``nn.Linear`` for a :class:`MaskedLinear`,
  lowers the density of the masks along the cubic schedule of movement pruning
  (:func:`cubic_density`, Sanh et al. 2020) and, after training, bakes the masks into
  plain ``nn.Linear`` weights so the result saves as an ordinary Hugging Face model.
* :class:`DistillationHook` mixes the task loss with a logit-distillation loss from a
  frozen teacher.

Pruning methods (``PruneConfig.method``), each ranking the weights of a matrix by an
importance and keeping the top-k of it:

``movement`` (first order, hard movement pruning, the default)
    Learned scores ``S`` (one per weight, an ``nn.Parameter`` trained by the optimizer
    with their own learning rate). The forward pass uses ``W * M``; the mask ``M`` is
    the top-k of ``S`` and passes its gradient straight through to ``S``, so
    ``dL/dS = W * dL/d(W*M)``: gradient descent makes ``S`` accumulate ``-W dL/dW``.
``first_order_taylor`` (first order, PLATON-style sensitivity)
    ``I = EMA_beta(|W * G|)``, where ``G = dL/d(W*M)`` is the gradient on the
    *effective* weight (dense, so a pruned weight keeps an up-to-date estimate of what
    it would bring back and can return, as in movement pruning). Updated in
    :meth:`PruningHook.after_backward`. PLATON's uncertainty term is not used.
``magnitude`` (zeroth order)
    ``|W|`` of the stored (unmasked) weights. Pruned weights get no gradient and keep
    their value, so one can come back if kept weights shrink below it, as in the
    magnitude pruning of the movement-pruning code.

Masks are recomputed every ``mask_update_interval`` optimizer steps (PLATON's deltaT);
with an interval of 1, movement pruning here is exactly the per-forward top-k of Sanh
et al., since their mask is the top-k of the scores after the last optimizer step.
The mask is also recomputed at the first step at which the schedule reaches the final
density and at the last step, so the achieved density equals the target (to the
nearest weight) throughout the final warm-up and at the end of training.

Top-k with ties: among equal importances, the weight with the lower flat index
(row-major; for a global threshold, earlier targets in module order first) is kept,
so masks are deterministic and keep exactly k weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lpaf.hooks import TrainHook, TrainState
from lpaf.targets import DEFAULT_TARGET_PATTERNS, find_targets, set_module

PRUNE_METHODS: tuple[str, ...] = ("movement", "first_order_taylor", "magnitude")
THRESHOLD_MODES: tuple[str, ...] = ("global", "per_matrix")
SCORE_INITS: tuple[str, ...] = ("constant", "magnitude")


# --------------------------------------------------------------------------- schedule


def cubic_density(
    step: int,
    total_steps: int,
    initial_warmup: int,
    final_warmup: int,
    *,
    d_final: float,
    d_init: float = 1.0,
) -> float:
    """Density of the cubic sparsity schedule of movement pruning (Sanh et al. 2020).

    ``density(t) = d_final + (d_init - d_final) * (1 - progress)^3`` with
    ``progress = (t - initial_warmup) / (total_steps - initial_warmup - final_warmup)``
    clipped to ``[0, 1]``: ``d_init`` up to the end of the initial warm-up, ``d_final``
    from the start of the final warm-up (step ``total_steps - final_warmup``) on.
    Warm-ups are in optimizer steps. When the two warm-ups leave no room for the
    schedule, the density jumps from ``d_init`` to ``d_final`` at ``initial_warmup``.
    """
    if initial_warmup < 0 or final_warmup < 0:
        raise ValueError("warm-ups must be non-negative")
    schedule_steps = total_steps - initial_warmup - final_warmup
    if schedule_steps <= 0:
        return d_init if step < initial_warmup else d_final
    progress = min(max((step - initial_warmup) / schedule_steps, 0.0), 1.0)
    return d_final + (d_init - d_final) * (1.0 - progress) ** 3


def keep_count(density: float, numel: int) -> int:
    """How many of ``numel`` weights a mask of ``density`` keeps: ``round(density * numel)``
    (Python's ``round``), clipped to ``[0, numel]``."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    return min(max(int(round(density * numel)), 0), numel)


# ------------------------------------------------------------------------------ top-k


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of ``scores``' shape keeping exactly the ``k`` largest entries.

    Ties at the threshold are broken by flat (row-major) index, lower first. Uses one
    ``kthvalue`` and a cumulative sum rather than a full sort, so it stays cheap on the
    concatenated scores of a whole model.
    """
    flat = scores.detach().reshape(-1).float()
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} entries")
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k == n:
        return torch.ones_like(scores, dtype=torch.bool)
    if torch.isnan(flat).any():
        raise ValueError("importance scores contain NaN")
    threshold = torch.kthvalue(flat, n - k + 1).values  # the k-th largest value
    above = flat > threshold
    at_threshold = flat == threshold
    missing = k - int(above.sum())
    keep = above | (at_threshold & (torch.cumsum(at_threshold, 0) <= missing))
    return keep.reshape(scores.shape)


def global_topk_masks(
    scores: Mapping[str, torch.Tensor], density: float
) -> dict[str, torch.Tensor]:
    """Masks from one threshold over the concatenated scores of all matrices, keeping
    exactly ``round(density * total)`` weights overall (ties: earlier matrix in the
    mapping's order, then lower flat index)."""
    names = list(scores)
    flat = torch.cat([scores[name].detach().reshape(-1).float() for name in names])
    keep = topk_mask(flat, keep_count(density, flat.numel()))
    sizes = [scores[name].numel() for name in names]
    return {
        name: part.reshape(scores[name].shape)
        for name, part in zip(names, torch.split(keep, sizes), strict=True)
    }


def per_matrix_topk_masks(
    scores: Mapping[str, torch.Tensor], density: float
) -> dict[str, torch.Tensor]:
    """Masks keeping ``round(density * numel)`` weights of every matrix separately."""
    return {name: topk_mask(s, keep_count(density, s.numel())) for name, s in scores.items()}


class TopKBinarizer(torch.autograd.Function):
    """Top-k binarizer with a straight-through gradient (hard movement pruning).

    ``TopKBinarizer.apply(scores, density)`` returns a mask (in ``scores``' dtype) with
    exactly ``round(density * scores.numel())`` ones at the largest scores; the backward
    pass hands the incoming gradient to the scores unchanged. :class:`MaskedLinear`
    applies the same rule to its cached mask between mask updates.
    """

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, density: float) -> torch.Tensor:
        return topk_mask(scores, keep_count(density, scores.numel())).to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


class GlobalTopKBinarizer(torch.autograd.Function):
    """Top-k over several score tensors at once (one global threshold) with a
    straight-through gradient to each: ``GlobalTopKBinarizer.apply(density, *scores)``
    returns one mask per score tensor, together keeping ``round(density * total)``."""

    @staticmethod
    def forward(ctx: Any, density: float, *scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        masks = global_topk_masks({str(i): s for i, s in enumerate(scores)}, density)
        return tuple(masks[str(i)].to(s.dtype) for i, s in enumerate(scores))

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return (None, *grad_outputs)


class _ScoredMaskProduct(torch.autograd.Function):
    """``weight * mask`` whose gradient reaches the scores straight through the mask:
    ``dL/dweight = mask * g``, ``dL/dscores = weight * g`` with ``g = dL/d(weight*mask)``."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, mask = ctx.saved_tensors
        grad_weight = grad_output * mask if ctx.needs_input_grad[0] else None
        grad_scores = grad_output * weight if ctx.needs_input_grad[1] else None
        return grad_weight, grad_scores, None


# ------------------------------------------------------------------------ the module


class MaskedLinear(nn.Module):
    """An ``nn.Linear`` whose forward uses ``weight * mask``.

    Holds the wrapped layer's own ``weight`` and ``bias`` parameters, a boolean ``mask``
    buffer (all ones at first) set by :class:`PruningHook`, and for movement pruning a
    ``scores`` parameter that receives the straight-through gradient ``W * dL/d(W*M)``.
    With ``track_effective_grad`` the gradient on the effective weight ``W*M`` is summed
    into ``effective_weight_grad`` (for first-order Taylor importance).
    """

    def __init__(
        self,
        linear: nn.Linear,
        with_scores: bool = False,
        scores_init: Literal["constant", "magnitude"] = "constant",
        track_effective_grad: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        if linear.bias is not None:
            self.bias = linear.bias
        else:
            self.register_parameter("bias", None)
        if with_scores:
            self.scores = nn.Parameter(initial_scores(linear.weight, scores_init))
        else:
            self.register_parameter("scores", None)
        self.register_buffer("mask", torch.ones_like(linear.weight, dtype=torch.bool))
        self.track_effective_grad = track_effective_grad
        self.effective_weight_grad: torch.Tensor | None = None

    def _accumulate_effective_grad(self, grad: torch.Tensor) -> None:
        grad = grad.detach()
        if self.effective_weight_grad is None:
            self.effective_weight_grad = grad.clone()
        else:
            self.effective_weight_grad += grad

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses, ``weight * mask`` (differentiable; with
        scores, its gradient also flows to them straight through the mask)."""
        mask = self.mask.to(self.weight.dtype)
        if self.scores is not None and torch.is_grad_enabled() and self.scores.requires_grad:
            weight = _ScoredMaskProduct.apply(self.weight, self.scores, mask)
        else:
            weight = self.weight * mask
        if self.track_effective_grad and weight.requires_grad:
            weight.register_hook(self._accumulate_effective_grad)
        return weight

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(inputs, self.effective_weight(), self.bias)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the mask baked into its weight (exact zeros)."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.weight * self.mask.to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        density = float(self.mask.float().mean())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, scores={self.scores is not None}, "
            f"density={density:.4f}"
        )


def initial_scores(weight: torch.Tensor, scores_init: str) -> torch.Tensor:
    """Initial movement scores. ``constant``: all zero (the default of Sanh et al.);
    ``magnitude``: ``|W|``, so movement starts from the magnitude ranking. Either way
    the initial mask keeps everything, since the density starts at 1 and the mask is
    only recomputed by the schedule."""
    if scores_init == "constant":
        return torch.zeros_like(weight.detach())
    if scores_init == "magnitude":
        return weight.detach().abs().clone()
    raise ValueError(f"scores_init must be one of {SCORE_INITS}, got {scores_init!r}")


# ------------------------------------------------------------------------ the config


@dataclass
class PruneConfig:
    """Settings of stage 2 (prune).

    method: ``movement`` (first-order learned scores, default), ``first_order_taylor``
        (EMA of ``|W * G|``) or ``magnitude`` (``|W|``, zeroth order).
    final_density: fraction of target weights kept at the end (``1 - sparsity``).
    initial_warmup: fraction of the total optimizer steps at density 1 before pruning
        starts (Sanh et al.: 1 of 10 epochs, so 0.1).
    final_warmup: fraction of the total steps at the final density at the end
        (Sanh et al.: 2 of 10 epochs, so 0.2). Warm-ups are fractions of the total steps
        so one config fits every task size; they become ``round(fraction * total)`` steps.
    mask_update_interval: deltaT, optimizer steps between mask recomputations (PLATON:
        10). The mask is also recomputed when the schedule first reaches the final
        density and at the last step.
    threshold: ``per_matrix`` (every target matrix keeps the same fraction, the
        movement-pruning default) or ``global`` (one threshold over all targets; only
        the overall density is fixed).
    scores_learning_rate: learning rate of the movement scores (Sanh et al.: 1e-2; no
        weight decay on scores). Unused by the other methods.
    scores_init: initial movement scores, ``constant`` (zeros, default) or ``magnitude``.
    ema_beta: smoothing of the first-order Taylor importance (PLATON beta1: 0.85).
    target_patterns: regular expressions naming the target modules
        (:mod:`lpaf.targets`).
    """

    method: str = "movement"
    final_density: float = 0.25
    initial_warmup: float = 0.1
    final_warmup: float = 0.2
    mask_update_interval: int = 10
    threshold: str = "per_matrix"
    scores_learning_rate: float = 1e-2
    scores_init: str = "constant"
    ema_beta: float = 0.85
    target_patterns: tuple[str, ...] = field(default_factory=lambda: DEFAULT_TARGET_PATTERNS)

    def __post_init__(self) -> None:
        self.target_patterns = tuple(self.target_patterns)
        if self.method not in PRUNE_METHODS:
            raise ValueError(f"prune.method must be one of {PRUNE_METHODS}, got {self.method!r}")
        if self.threshold not in THRESHOLD_MODES:
            raise ValueError(
                f"prune.threshold must be one of {THRESHOLD_MODES}, got {self.threshold!r}"
            )
        if self.scores_init not in SCORE_INITS:
            raise ValueError(
                f"prune.scores_init must be one of {SCORE_INITS}, got {self.scores_init!r}"
            )
        if not 0.0 <= self.final_density <= 1.0:
            raise ValueError(f"prune.final_density must be in [0, 1], got {self.final_density}")
        if self.initial_warmup < 0 or self.final_warmup < 0:
            raise ValueError("prune warm-ups must be non-negative fractions of the total steps")
        if self.initial_warmup + self.final_warmup > 1.0:
            raise ValueError("prune.initial_warmup + prune.final_warmup must not exceed 1")
        if self.mask_update_interval < 1:
            raise ValueError("prune.mask_update_interval must be at least 1")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"prune.ema_beta must be in [0, 1), got {self.ema_beta}")


# -------------------------------------------------------------------------- the hook


class PruningHook(TrainHook):
    """Gradual unstructured pruning of the target matrices (see the module docstring).

    Use with the training loop, or by hand in this order: :meth:`setup`, optimizer with
    :meth:`param_groups`, then per step: forward, :meth:`TrainHook.loss`, backward,
    :meth:`after_backward`, optimizer step, ``state.step += 1``, :meth:`after_step`;
    at the end :meth:`finalize`. Save :meth:`masks` and :meth:`importance` for stage 4.
    """

    def __init__(self, config: PruneConfig) -> None:
        self.config = config
        self.modules: dict[str, MaskedLinear] = {}
        self.ema_importance: dict[str, torch.Tensor] = {}
        self.scheduled_density = 1.0  # density the schedule asks for at the current step
        self.mask_density_target = 1.0  # density the current masks were computed for
        self.achieved_density = 1.0  # kept / total over all target weights
        self.last_mask_update_step = 0
        self._pending_state: dict[str, Any] | None = None
        self._final_masks: dict[str, torch.Tensor] | None = None
        self._final_importance: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ schedule

    def warmup_steps(self, total_steps: int) -> tuple[int, int]:
        """The initial and final warm-up in optimizer steps."""
        return (
            int(round(self.config.initial_warmup * total_steps)),
            int(round(self.config.final_warmup * total_steps)),
        )

    def density_at(self, step: int, total_steps: int) -> float:
        initial, final = self.warmup_steps(total_steps)
        return cubic_density(
            step, total_steps, initial, final, d_final=self.config.final_density, d_init=1.0
        )

    # --------------------------------------------------------------- hook methods

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        method = self.config.method
        self.modules = {}
        for name, module in find_targets(model, self.config.target_patterns).items():
            if isinstance(module, MaskedLinear):
                masked = module
            elif isinstance(module, nn.Linear):
                masked = MaskedLinear(
                    module,
                    with_scores=method == "movement",
                    scores_init=self.config.scores_init,
                    track_effective_grad=method == "first_order_taylor",
                )
                set_module(model, name, masked)
            else:
                raise TypeError(f"cannot prune {name}: {type(module).__name__} is not nn.Linear")
            self.modules[name] = masked
        if method == "first_order_taylor":
            self.ema_importance = {
                name: torch.zeros_like(m.weight, dtype=torch.float32)
                for name, m in self.modules.items()
            }
        self._final_masks = self._final_importance = None
        self._refresh_achieved_density()
        if self._pending_state is not None:
            pending, self._pending_state = self._pending_state, None
            self.load_state_dict(pending)
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        if self.config.method != "movement":
            return []
        return [
            {
                "params": [m.scores for m in self.modules.values()],
                "lr": self.config.scores_learning_rate,
                "weight_decay": 0.0,
            }
        ]

    @torch.no_grad()
    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        if self.config.method != "first_order_taylor":
            return
        beta = self.config.ema_beta
        for name, module in self.modules.items():
            grad = module.effective_weight_grad
            if grad is None:
                continue
            ema = self.ema_importance[name]
            if ema.device != grad.device:
                ema = self.ema_importance[name] = ema.to(grad.device)
            sensitivity = (module.weight.detach().float() * grad.float()).abs()
            ema.mul_(beta).add_(sensitivity, alpha=1.0 - beta)
            module.effective_weight_grad = None

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        step, total = state.step, state.total_steps
        density = self.density_at(step, total)
        self.scheduled_density = density
        reached_final = density == self.config.final_density
        due = (
            step % self.config.mask_update_interval == 0
            or step >= total
            or (reached_final and self.mask_density_target != density)
        )
        if due:
            self.update_masks(density)
            self.last_mask_update_step = step

    def log_values(self) -> dict[str, float]:
        return {
            "prune_target_density": self.scheduled_density,
            "prune_density": self.achieved_density,
        }

    def finalize(self, model: nn.Module) -> nn.Module:
        """Bake the masks into plain ``nn.Linear`` weights and return the model with its
        original (dense) architecture. :meth:`masks` and :meth:`importance` keep
        answering afterwards."""
        if not self.modules:
            return model
        self._final_masks = self.masks()
        self._final_importance = self.importance()
        for name, module in self.modules.items():
            set_module(model, name, module.to_linear())
        self.modules = {}
        return model

    def state_dict(self) -> dict[str, Any]:
        """Step counters, densities, masks and EMA importance (scores are model
        parameters and travel with the model's state dict)."""
        return {
            "method": self.config.method,
            "scheduled_density": self.scheduled_density,
            "mask_density_target": self.mask_density_target,
            "last_mask_update_step": self.last_mask_update_step,
            "masks": {name: m.mask.detach().cpu().clone() for name, m in self.modules.items()},
            "ema_importance": {
                name: ema.detach().cpu().clone() for name, ema in self.ema_importance.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method", self.config.method) != self.config.method:
            raise ValueError(
                f"pruning state of method {state['method']!r} cannot resume "
                f"method {self.config.method!r}"
            )
        if not self.modules:  # before setup: apply once the modules exist
            self._pending_state = state
            return
        self.scheduled_density = float(state["scheduled_density"])
        self.mask_density_target = float(state["mask_density_target"])
        self.last_mask_update_step = int(state["last_mask_update_step"])
        with torch.no_grad():
            for name, mask in state["masks"].items():
                self.modules[name].mask.copy_(mask)
        self.ema_importance = {
            name: ema.to(self.modules[name].weight.device).float().clone()
            for name, ema in state["ema_importance"].items()
        }
        self._refresh_achieved_density()

    # ------------------------------------------------------------------- masks

    @torch.no_grad()
    def update_masks(self, density: float) -> None:
        """Recompute every mask from the current importance at ``density``."""
        importance = self._current_importance()
        if self.config.threshold == "global":
            masks = global_topk_masks(importance, density)
        else:
            masks = per_matrix_topk_masks(importance, density)
        for name, mask in masks.items():
            self.modules[name].mask.copy_(mask)
        self.mask_density_target = density
        self._refresh_achieved_density()

    def _current_importance(self) -> dict[str, torch.Tensor]:
        method = self.config.method
        if method == "movement":
            return {name: m.scores.detach() for name, m in self.modules.items()}
        if method == "first_order_taylor":
            return {name: self.ema_importance[name] for name in self.modules}
        return {name: m.weight.detach().abs() for name, m in self.modules.items()}

    def _refresh_achieved_density(self) -> None:
        kept = sum(int(m.mask.sum()) for m in self.modules.values())
        total = sum(m.mask.numel() for m in self.modules.values())
        self.achieved_density = kept / total if total else 1.0

    def masks(self) -> dict[str, torch.Tensor]:
        """``{target name: boolean mask}`` (CPU copies), also after :meth:`finalize`."""
        if self._final_masks is not None and not self.modules:
            return dict(self._final_masks)
        return {name: m.mask.detach().cpu().clone() for name, m in self.modules.items()}

    def importance(self) -> dict[str, torch.Tensor]:
        """``{target name: float32 importance}`` (CPU copies): the movement scores, the
        EMA of ``|W * G|``, or ``|W|``, by method; also after :meth:`finalize`."""
        if self._final_importance is not None and not self.modules:
            return dict(self._final_importance)
        return {
            name: imp.detach().float().cpu().clone()
            for name, imp in self._current_importance().items()
        }


# ------------------------------------------------------------------ distillation


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Logit distillation loss.

    Classification (last dimension > 1): ``KL(softmax(t/T) || softmax(s/T)) * T^2``,
    averaged over examples (all leading dimensions flattened, so token-level logits
    average over tokens). Regression (last dimension 1): mean squared error between
    the logits; the temperature does not apply.
    """
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    num_classes = student_logits.shape[-1]
    student_log_probs = F.log_softmax(
        student_logits.reshape(-1, num_classes).float() / temperature, -1
    )
    teacher_log_probs = F.log_softmax(
        teacher_logits.reshape(-1, num_classes).float() / temperature, -1
    )
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


class DistillationHook(TrainHook):
    """``loss = alpha * KD + (1 - alpha) * task loss`` from a frozen teacher.

    The teacher is run live (eval mode, ``no_grad``) on the same batch inside
    :meth:`loss`, with every batch entry except ``labels`` as keyword arguments; it is
    moved to the training device in :meth:`setup`. Live logits need no bookkeeping of
    example order and stay right under resumption, at the price of one teacher
    forward per step. See :func:`distillation_loss` for KD.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float = 2.0,
        alpha: float = 0.5,
        excluded_batch_keys: Sequence[str] = ("labels",),
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be positive, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.excluded_batch_keys = frozenset(excluded_batch_keys)
        self.teacher.eval().requires_grad_(False)
        self._last_kd_loss = float("nan")

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        self.teacher.to(state.device).eval().requires_grad_(False)
        return model

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.teacher.training:
            self.teacher.eval()
        inputs = {k: v for k, v in batch.items() if k not in self.excluded_batch_keys}
        with torch.no_grad():
            outputs = self.teacher(**inputs)
        return outputs.logits if hasattr(outputs, "logits") else outputs["logits"]

    def loss(
        self,
        batch: dict[str, torch.Tensor],
        outputs: Any,
        loss: torch.Tensor,
        state: TrainState,
    ) -> torch.Tensor:
        if self.alpha == 0.0:
            return loss
        student_logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        kd = distillation_loss(student_logits, self.teacher_logits(batch), self.temperature)
        self._last_kd_loss = float(kd.detach())
        if loss is None:
            return kd
        return self.alpha * kd + (1.0 - self.alpha) * loss

    def log_values(self) -> dict[str, float]:
        return {"kd_loss": self._last_kd_loss}
