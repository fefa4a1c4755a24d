"""Rule `evaluate`: see lpaf.stages.evaluate_model_dir."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.stages import evaluate_model_dir  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    evaluate_model_dir(
        sm.config,
        task_name=sm.wildcards.task,
        model_dir=sm.input.model,
        output_path=sm.output[0],
        threads=sm.threads,
    )
