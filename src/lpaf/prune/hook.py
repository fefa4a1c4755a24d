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

from typing import Any

import torch
from torch import nn

from lpaf.hooks import TrainHook, TrainState
from lpaf.prune.config import PruneConfig
from lpaf.prune.layer import (
    MaskedLinear,
    cubic_density,
    global_topk_masks,
    per_matrix_topk_masks,
)
from lpaf.targets import find_targets, set_module


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
