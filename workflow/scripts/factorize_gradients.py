"""Rule `factorize_gradients`: see lpaf.stages.factorize_gradients."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.stages import factorize_gradients  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    factorize_gradients(
        sm.config,
        task_name=sm.wildcards.task,
        seed=int(sm.wildcards.seed),
        source_dir=sm.input.model,
        fisher_path=sm.output.fisher,
        taylor_path=sm.output.taylor,
        threads=sm.threads,
    )
