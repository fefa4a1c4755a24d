"""Rule `fig_init_vs_rho`: see lpaf.factorize.results.init_vs_rho."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.factorize.results import init_vs_rho  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    init_vs_rho(sm.input.metrics, png_path=sm.output.png, pdf_path=sm.output.pdf)
