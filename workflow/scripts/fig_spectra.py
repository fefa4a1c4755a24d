"""Rule `fig_spectra`: see lpaf.figures.spectra."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.rank.results import spectra  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    spectra(
        sm.input.spectra,
        png_path=sm.output.png,
        pdf_path=sm.output.pdf,
        layer=sm.params.layer,
    )
