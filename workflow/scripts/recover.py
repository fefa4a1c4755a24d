"""Rule `recover`: see lpaf.stages.recover."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.stages import recover  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    recover(
        sm.config,
        task_name=sm.wildcards.task,
        seed=int(sm.wildcards.seed),
        pipeline=sm.wildcards.pipeline,
        factorized_dir=sm.input.factorized,
        sparse_dir=sm.input.sparse,
        teacher_dir=sm.input.teacher,
        model_dir=sm.output.model,
        metrics_path=sm.output.metrics,
        train_log_path=sm.output.train_log,
        predictions_path=sm.output.predictions,
        threads=sm.threads,
    )
