"""PruneConfig refuses bad settings."""

import pytest

from lpaf.prune import PruneConfig


def test_prune_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="method"):
        PruneConfig(method="random")
    with pytest.raises(ValueError, match="threshold"):
        PruneConfig(threshold="layer")
    with pytest.raises(ValueError, match="warm"):
        PruneConfig(initial_warmup=0.6, final_warmup=0.5)
    with pytest.raises(ValueError, match="final_density"):
        PruneConfig(final_density=1.5)
    assert PruneConfig(target_patterns=["a", "b"]).target_patterns == ("a", "b")
