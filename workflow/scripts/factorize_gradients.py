"""Rule `factorize_gradients`: see lpaf.factorize.stage.run_gradients."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.factorize import stage  # noqa: E402
from lpaf.snakemake_glue import job, job_logging, paths  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    stage.run_gradients(sm.config, job(sm), sm.input.model, paths(stage.GradientOutputs, sm.output))
