"""Helpers of the pruning tests."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def stable_topk_reference():
    """Second implementation of the top-k rule: stable sort of -values (ties: lower
    index first)."""

    def reference(values: np.ndarray, k: int) -> np.ndarray:
        flat = values.reshape(-1)
        order = np.argsort(-flat, kind="stable")
        keep = np.zeros(flat.size, dtype=bool)
        keep[order[:k]] = True
        return keep.reshape(values.shape)

    return reference
