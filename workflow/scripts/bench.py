"""Rule `bench`: see lpaf.bench.run_rule."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.bench import run_rule  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    run_rule(
        sm.config,
        sm.params.records,
        sm.output.csv,
        sm.output.png,
        sm.output.pdf,
        threads=sm.threads,
    )
