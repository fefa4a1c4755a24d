"""Rule `table_prune`: see lpaf.tables.prune_table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.prune.results import prune_table, write_prune_table  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    table = prune_table(sm.input.evaluations, sm.input.rank_stats, sm.input.metrics)
    write_prune_table(table, csv_path=sm.output.csv, md_path=sm.output.md)
