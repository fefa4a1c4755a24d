"""Rules `table_main` and `table_ablation`: see lpaf.recover.results.write_main_table
and write_ablation_table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.recover.results import write_ablation_table, write_main_table  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
write = {"table_main": write_main_table, "table_ablation": write_ablation_table}[sm.rule]
with job_logging(sm):
    p, out = sm.params, sm.output
    write(p.records, p.rows, p.tasks, csv_path=out.csv, md_path=out.md, tex_path=out.tex)
