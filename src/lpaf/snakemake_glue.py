"""Small helpers for the thin scripts in ``workflow/scripts``."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def job_logging(snakemake) -> Iterator[logging.Logger]:
    """Send logging, stdout and stderr of a script job to the rule's ``log:`` file, and
    make sure a failure ends up in it with its traceback."""
    log_path = Path(snakemake.log[0]) if len(snakemake.log) else None
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        yield logging.getLogger("lpaf")
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            logger = logging.getLogger("lpaf")
            logger.info(
                "job %s pid %d wildcards %s", snakemake.rule, os.getpid(), dict(snakemake.wildcards)
            )
            try:
                yield logger
            except BaseException:
                logger.exception("job failed")
                raise


def paths(cls, named):
    """The dataclass ``cls`` (a stage's ``Inputs`` or ``Outputs``) from Snakemake's
    named ``input``/``output``; a field the rule does not declare gets its default."""
    from dataclasses import MISSING, fields

    values = {}
    for f in fields(cls):
        value = named.get(f.name)
        if value is None and f.default is MISSING:
            raise KeyError(f"rule declares no {f.name!r}, which {cls.__qualname__} needs")
        values[f.name] = value if value is not None else f.default
    return cls(**values)


def job(snakemake):
    """The :class:`lpaf.runtime.Job` of a script job, from its wildcards and threads."""
    from lpaf.runtime import Job

    wildcards = snakemake.wildcards
    seed = int(wildcards.seed) if "seed" in wildcards.keys() else 0
    return Job(task=wildcards.task, seed=seed, threads=snakemake.threads)
