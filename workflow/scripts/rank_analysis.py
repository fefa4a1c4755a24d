"""Rule `rank_analysis`: see lpaf.rank.stage.run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.rank import stage  # noqa: E402
from lpaf.snakemake_glue import job_logging, paths  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    stage.run(sm.config, sm.input.model, paths(stage.Outputs, sm.output), threads=sm.threads)
