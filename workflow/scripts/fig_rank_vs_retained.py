"""Rule `fig_rank_vs_retained`: see lpaf.figures.rank_vs_retained."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.prune.results import prune_table  # noqa: E402
from lpaf.rank.results import rank_vs_retained  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    table = prune_table(sm.input.evaluations, sm.input.rank_stats, sm.input.metrics)
    rank_vs_retained(table, png_path=sm.output.png, pdf_path=sm.output.pdf)
