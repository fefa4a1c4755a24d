"""The shared test toolkit: the offline environment, one tiny BERT builder, random
batches, one Snakemake runner and the tiny workflow, run once per session.

Test modules take these as fixtures (``tiny_bert``, ``random_batch``, ``snakemake``,
``tiny_workflow``, ``factorize_workflow``, ``study_workflow``...); none imports a
helper from another test module."""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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


def snakemake_command(
    *args: str,
    workdir: Path,
    snakefile: Path = REPO / "Snakefile",
    configfiles=(TINY,),
    cores: int | None = 2,
) -> list[str]:
    """``python -m snakemake`` on ``snakefile`` in ``workdir`` with ``args`` (options
    and targets; a trailing ``--config`` must come last in them) and then
    ``--configfile *configfiles``."""
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
    cmd += [str(a) for a in args]
    if configfiles:
        cmd += ["--configfile", *[str(c) for c in configfiles]]
    return cmd


_RUNNING: set[subprocess.Popen] = set()  # ended at the session's end if still running


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
    """Run :func:`snakemake_command`, offline unless told otherwise (``env`` on top).
    With ``check`` a failure raises with the end of Snakemake's output."""
    cmd = snakemake_command(
        *args, workdir=workdir, snakefile=snakefile, configfiles=configfiles, cores=cores
    )
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=offline_env(offline, **(env or {})),
        cwd=cwd,
    )
    _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        _RUNNING.discard(proc)
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{stdout[-4000:]}\n{stderr[-8000:]}")
    return result


def copy_workflow(target: Path) -> Path:
    """A copy of the workflow's code (Snakefile, workflow/, src/, config/, envs/,
    tests/config/) with resources/ linked."""
    for part in ("Snakefile", "workflow", "src", "config", "envs", "tests/config"):
        source, dest = REPO / part, target / part
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest)
    (target / "resources").symlink_to(REPO / "resources")
    # byte-compiled once here: with PYTHONDONTWRITEBYTECODE every job would compile lpaf
    compileall.compile_dir(target / "src", quiet=1)
    return target


@dataclass(frozen=True)
class WorkflowRun:
    """A finished run of the workflow: the code copy it ran (Snakemake records each
    job's code, script paths included, so later calls must use the same copy), its
    working directory and config files."""

    code: Path
    workdir: Path
    configfiles: tuple[Path, ...]

    def snakemake(self, *args: str, **options) -> subprocess.CompletedProcess:
        """Snakemake again on this run's code, directory and configs."""
        return run_snakemake(
            *args,
            workdir=self.workdir,
            snakefile=self.code / "Snakefile",
            configfiles=self.configfiles,
            **options,
        )


# The session's workflow runs: the tiny config (rule all) once, and two runs that
# start from a copy of its finished directory, so that their fine-tuning and pruning
# jobs are not repeated: stage 4 on one task and seed (tiny_factorize.yaml, the
# targets tests/workflow/test_factorize.py reads) and the method comparison
# (tiny_study.yaml, rule all).
FACTORIZE_RUN = "results/tiny-bert/MRPC/factorize/{source}/{method}/uniform/rho0.4/seed1"
WORKFLOW_RUNS = {
    "tiny": dict(base=None, configs=("tiny.yaml",), targets=()),
    "factorize": dict(
        base="tiny",
        configs=("tiny.yaml", "tiny_factorize.yaml"),
        targets=(
            "results/tables/factorize_init.csv",
            "results/figures/init_vs_rho.png",
            FACTORIZE_RUN.format(source="finetune", method="svd") + "/evaluation.json",
            FACTORIZE_RUN.format(source="prune-movement-density0.3", method="sparsity_aware")
            + "/evaluation.json",
        ),
    ),
    "study": dict(base="tiny", configs=("tiny.yaml", "tiny_study.yaml"), targets=()),
    # extractive QA through the stages the main and ablation tables need
    "qa": dict(
        base=None,
        configs=("tiny.yaml", "tiny_qa.yaml"),
        targets=(
            "results/tables/main.csv",
            "results/tables/ablation.csv",
            "results/tables/latency.csv",
        ),
    ),
}
WORKFLOW_FIXTURES = {
    "tiny_workflow": "tiny",
    "factorize_workflow": "factorize",
    "study_workflow": "study",
    "qa_workflow": "qa",
}


class WorkflowRuns:
    """The runs of :data:`WORKFLOW_RUNS` the selected tests need, started in the
    background when the session starts (the tiny one overlaps the unit tests, the two
    that copy it then run side by side); :meth:`get` waits for one."""

    def __init__(self, root: Path, wanted: set[str]) -> None:
        self.root = root
        self._code: Path | None = None
        self.closed = False
        self.wanted = wanted | {WORKFLOW_RUNS[n]["base"] for n in wanted} - {None}
        self.pool = ThreadPoolExecutor(max_workers=len(WORKFLOW_RUNS))
        self.futures: dict[str, Future] = {}
        if self.wanted:
            self.code  # noqa: B018 (made here, before the threads)
        for name in WORKFLOW_RUNS:  # bases first
            if name in self.wanted:
                self.futures[name] = self.pool.submit(self._run, name)

    @property
    def code(self) -> Path:
        """The copy of the workflow every run of the session uses (made once)."""
        if self._code is None:
            self._code = copy_workflow(self.root / "code")
        return self._code

    def _run(self, name: str) -> WorkflowRun:
        spec = WORKFLOW_RUNS[name]
        workdir = self.root / name
        if spec["base"] is not None:
            self.futures[spec["base"]].result()  # which copied its directory to ours
        else:
            workdir.mkdir()
        run = WorkflowRun(
            self.code, workdir, tuple(self.code / "tests/config" / c for c in spec["configs"])
        )
        if self.closed:
            raise RuntimeError("the session ended before this run started")
        run.snakemake(*spec["targets"])
        # the runs that start from this one get their copies before any test sees it:
        # results and Snakemake's records, with their modification times
        for other in self.wanted:
            if WORKFLOW_RUNS[other]["base"] == name:
                shutil.copytree(workdir, self.root / other, symlinks=True)
        return run

    def get(self, name: str) -> WorkflowRun:
        if name not in self.futures:
            raise LookupError(f"workflow run {name!r} was not foreseen at the session's start")
        return self.futures[name].result()

    def close(self) -> None:
        self.closed = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(_RUNNING):
            proc.kill()


def pytest_collection_modifyitems(session, config, items):
    """Tests that read a workflow run last (in the order the runs finish), so that
    everything else runs while the runs are under way; otherwise the order stays."""
    order = {name: i + 1 for i, name in enumerate(WORKFLOW_RUNS)}

    def waits_for(item) -> int:
        names = getattr(item, "fixturenames", ())
        return max(
            (order[WORKFLOW_FIXTURES[f]] for f in names if f in WORKFLOW_FIXTURES), default=0
        )

    items.sort(key=waits_for)


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


@pytest.fixture(scope="session", autouse=True)
def workflow_runs(request, tmp_path_factory):
    """Starts, before the first test, the workflow runs the selected tests use."""
    wanted = {
        WORKFLOW_FIXTURES[f]
        for item in request.session.items
        for f in getattr(item, "fixturenames", ())
        if f in WORKFLOW_FIXTURES
    }
    runs = WorkflowRuns(tmp_path_factory.mktemp("workflow-runs"), wanted)
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def tiny_workflow(workflow_runs) -> WorkflowRun:
    """One finished run of the tiny config (``rule all``), shared by the session;
    tests read it and may rerun Snakemake in it, never change its results."""
    return workflow_runs.get("tiny")


@pytest.fixture(scope="session")
def factorize_workflow(workflow_runs) -> WorkflowRun:
    """The tiny run copied, then stage 4 with tests/config/tiny_factorize.yaml."""
    return workflow_runs.get("factorize")


@pytest.fixture(scope="session")
def study_workflow(workflow_runs) -> WorkflowRun:
    """The tiny run copied, then the method comparison (tests/config/tiny_study.yaml)."""
    return workflow_runs.get("study")


@pytest.fixture(scope="session")
def qa_workflow(workflow_runs) -> WorkflowRun:
    """Extractive QA (tests/config/tiny_qa.yaml): the main and ablation tables."""
    return workflow_runs.get("qa")
