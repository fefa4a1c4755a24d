import os
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
# precision: auto caches its CPU probe per machine; the tests keep theirs to themselves
# (inherited by the Snakemake subprocesses they start).
if "LPAF_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["LPAF_CACHE_DIR"] = tempfile.mkdtemp(prefix="lpaf-test-cache-")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from lpaf.modeling import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture
def tiny_workflow_args(repo, tmp_path) -> list[str]:
    """Snakemake arguments for the tiny test config in a fresh working directory."""
    return [
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(repo / "tests/config/tiny.yaml"),
    ]
