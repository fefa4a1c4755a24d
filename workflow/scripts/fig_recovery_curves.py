"""Rule `fig_recovery_curves`: see lpaf.recover.results.recovery_curves."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.recover.results import recovery_curves  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    recovery_curves(sm.params.records, png_path=sm.output.png, pdf_path=sm.output.pdf)
