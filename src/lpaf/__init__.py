"""lpaf: Low-Rank Prune-And-Factorize language-model compression.

One-line loading of any model directory the workflow writes::

    import lpaf
    model = lpaf.load_model("results/minilm-l6/MRPC/finetune/seed42/model")
"""

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Load a model directory written by the workflow (dense, pruned or compressed)."""
    from lpaf.modeling import load_model as _load

    return _load(path, device=device)


def load_compressed(path, device="cpu"):
    """Load a compressed (low-rank) model directory; see :mod:`lpaf.compressed`."""
    from lpaf.compressed import load_compressed as _load

    return _load(path, device=device)


def load_for_inference(path, device="cpu", tune_allocator=True):
    """:func:`load_model`, in ``eval()`` mode, with the inference rewrites of
    :mod:`lpaf.deploy` (dense fallback for costly factors, fused attention
    down-projections): the same outputs to float tolerance, fewer GEMMs. On the CPU
    it also calls :func:`lpaf.deploy.tune_cpu_allocator` (process-wide: freed memory
    stays in the process, so forward passes stop paying page faults) unless
    ``tune_allocator`` is false."""
    import torch

    from lpaf.deploy import optimize_for_inference, tune_cpu_allocator

    if tune_allocator and torch.device(device).type == "cpu":
        tune_cpu_allocator()
    model = load_model(path, device=device)
    optimize_for_inference(model)
    return model


__all__ = ["__version__", "load_model", "load_compressed", "load_for_inference"]
