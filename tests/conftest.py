"""The shared test toolkit: the offline environment, one tiny BERT builder, random
batches, one Snakemake runner and the tiny workflow, run once per session.

Test modules take these as fixtures (``tiny_bert``, ``random_batch``, ``snakemake``,
``tiny_workflow``...); none imports a helper from another test module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
for _var, _value in OFFLINE.items():
    os.environ.setdefault(_var, _value)
# precision: auto caches its CPU probe per machine; the tests keep theirs to themselves
# (inherited by the Snakemake subprocesses they start).
if "LPAF_CACHE_DIR" not in os.environ:
    os.environ["LPAF_CACHE_DIR"] = tempfile.mkdtemp(prefix="lpaf-test-cache-")

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests/config/tiny.yaml"
TINY_STUDY = REPO / "tests/config/tiny_study.yaml"


def offline_env(offline: bool = True, **extra: str) -> dict[str, str]:
    """``os.environ`` with the Hugging Face offline switches set (or all removed, for
    ``offline=False``) and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE}
    if offline:
        env.update(OFFLINE)
    env.update(extra)
    return env


def build_tiny_bert(
    seed: int = 0,
    *,
    num_labels: int = 2,
    dropout: float = 0.1,
    vocab_size: int = 100,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
):
    """A randomly initialised ``BertForSequenceClassification`` (train mode) of 2 layers,
    hidden 32, feed-forward 64: 12 target matrices. ``dropout`` is BertConfig's
    default unless given; ``seed`` seeds torch's global generator first."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def build_random_batch(
    seed: int = 0,
    *,
    size: int = 4,
    length: int = 12,
    vocab_size: int = 100,
    labels=True,
):
    """Token ids (from a generator seeded ``seed``), an all-ones attention mask and
    binary labels drawn after the ids; ``labels`` a tensor uses it, ``False`` leaves
    them out."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batch = {
        "input_ids": torch.randint(0, vocab_size, (size, length), generator=generator),
        "attention_mask": torch.ones(size, length, dtype=torch.long),
    }
    if labels is True:
        batch["labels"] = torch.randint(0, 2, (size,), generator=generator)
    elif labels is not False:
        batch["labels"] = labels
    return batch


def run_snakemake(
    *args: str,
    workdir: Path,
    snakefile: Path = REPO / "Snakefile",
    configfiles=(TINY,),
    cores: int | None = 2,
    offline: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``python -m snakemake`` on ``snakefile`` in ``workdir`` with ``args`` (options
    and targets; a trailing ``--config`` must come last in them) and then
    ``--configfile *configfiles``; offline unless told otherwise. With ``check`` a
    failure raises with the end of Snakemake's output."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
    ]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    cmd += list(args)
    if configfiles:
        cmd += ["--configfile", *[str(c) for c in configfiles]]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=offline_env(offline, **(env or {})),
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def copy_workflow(target: Path) -> Path:
    """A copy of the workflow's code (Snakefile, workflow/, src/, config/, envs/,
    tests/config/) with resources/ linked, for a test that edits it."""
    for part in ("Snakefile", "workflow", "src", "config", "envs", "tests/config"):
        source, dest = REPO / part, target / part
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest)
    (target / "resources").symlink_to(REPO / "resources")
    return target


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a finished working directory, results and Snakemake's records with
    their modification times, so Snakemake finds its jobs done."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return target


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_bert():
    """The tiny-BERT builder (:func:`build_tiny_bert`)."""
    return build_tiny_bert


@pytest.fixture(scope="session")
def random_batch():
    """The random-batch builder (:func:`build_random_batch`)."""
    return build_random_batch


@pytest.fixture(scope="session")
def snakemake():
    """The Snakemake runner (:func:`run_snakemake`)."""
    return run_snakemake


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
        str(TINY),
    ]


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> Path:
    """The working directory of one finished run of the tiny config (``rule all``),
    shared by the session; tests that need more copy it (:func:`copy_run`) rather
    than write into it."""
    workdir = tmp_path_factory.mktemp("tiny-workflow")
    run_snakemake(workdir=workdir)
    return workdir
