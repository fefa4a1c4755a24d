"""Rule `table_finetune`: see lpaf.tables.finetune_table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.finetune.results import finetune_table
from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.tables import write_table  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    table = finetune_table(sm.input.evaluations, sm.input.metrics)
    write_table(table, csv_path=sm.output.csv, md_path=sm.output.md)
