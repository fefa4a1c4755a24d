"""Rule `recover`: see lpaf.recover.stage.run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.recover import stage  # noqa: E402
from lpaf.snakemake_glue import job, job_logging, paths  # noqa: E402

sm = snakemake  # noqa: F821
inputs, outputs = paths(stage.Inputs, sm.input), paths(stage.Outputs, sm.output)
with job_logging(sm):
    stage.run(sm.config, job(sm), sm.wildcards.pipeline, inputs, outputs)
