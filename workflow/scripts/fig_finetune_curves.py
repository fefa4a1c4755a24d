"""Rule `fig_finetune_curves`: see lpaf.figures.finetune_curves."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.finetune.results import finetune_curves  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    finetune_curves(sm.input.logs, png_path=sm.output.png, pdf_path=sm.output.pdf)
