"""Rule `prune`: see lpaf.stages.prune."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.stages import prune  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    prune(
        sm.config,
        task_name=sm.wildcards.task,
        method=sm.wildcards.method,
        density=float(sm.wildcards.density),
        seed=int(sm.wildcards.seed),
        teacher_dir=sm.input.teacher,
        model_dir=sm.output.model,
        masks_path=sm.output.masks,
        importance_path=sm.output.importance,
        metrics_path=sm.output.metrics,
        train_log_path=sm.output.train_log,
        densities_path=sm.output.densities,
        threads=sm.threads,
    )
