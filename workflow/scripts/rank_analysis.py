"""Rule `rank_analysis`: see lpaf.stages.rank_analysis."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.stages import rank_analysis  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    rank_analysis(
        sm.config,
        model_dir=sm.input.model,
        stats_path=sm.output.stats,
        spectra_path=sm.output.spectra,
        threads=sm.threads,
    )
