"""Rule `fig_score_vs_rho`: see lpaf.figures.score_vs_rho."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.recover.results import score_vs_rho  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    score_vs_rho(sm.params.records, sm.params.rows, png_path=sm.output.png, pdf_path=sm.output.pdf)
