"""Rule `factorize`: see lpaf.factorize.stage.run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.factorize import stage  # noqa: E402
from lpaf.snakemake_glue import job, job_logging, paths  # noqa: E402
from lpaf.sources import from_segment  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    spec = stage.Spec(
        source=from_segment(sm.wildcards.source),
        method=sm.wildcards.method,
        rho=float(sm.wildcards.rho),
        rank_rule=sm.wildcards.rank_rule,
    )
    stage.run(
        sm.config,
        job(sm),
        spec,
        paths(stage.Inputs, sm.input),
        paths(stage.Outputs, sm.output),
    )
