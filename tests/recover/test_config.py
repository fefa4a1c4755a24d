"""RecoverConfig refuses bad settings."""

import pytest

from lpaf.recover import RecoverConfig


def test_bad_recover_config_is_rejected():
    with pytest.raises(ValueError, match="schedule"):
        RecoverConfig(schedule="annealed")
    with pytest.raises(ValueError, match="p0"):
        RecoverConfig(p0=1.5)
