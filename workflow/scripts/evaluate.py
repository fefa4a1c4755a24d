"""Rule `evaluate`: see lpaf.evaluate.stage.run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.evaluate import stage  # noqa: E402
from lpaf.snakemake_glue import job, job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    stage.run(sm.config, job(sm), sm.input.model, sm.output[0])
