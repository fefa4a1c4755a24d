"""Rule `table_factorize_init`: see lpaf.factorize.results.factorize_init_table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.factorize.results import write_factorize_init_table  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    write_factorize_init_table(sm.input.metrics, csv_path=sm.output.csv, md_path=sm.output.md)
