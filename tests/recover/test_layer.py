"""The annealed probability of the mixed-rank schedule (lpaf.recover.layer)."""

import pytest

from lpaf.recover import annealed_probability


def test_annealed_probability_values():
    assert annealed_probability(0, 100, 0.5, 0.4) == 0.5
    assert annealed_probability(20, 100, 0.5, 0.4) == pytest.approx(0.25)
    assert annealed_probability(40, 100, 0.5, 0.4) == 0.0
    assert annealed_probability(90, 100, 0.5, 0.4) == 0.0
    assert annealed_probability(0, 100, 0.5, 0.0) == 0.0
