"""Rule `table_ablation`: see lpaf.recover.results.write_ablation_table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.recover.results import write_ablation_table  # noqa: E402
from lpaf.snakemake_glue import job_logging  # noqa: E402

sm = snakemake  # noqa: F821
with job_logging(sm):
    write_ablation_table(
        sm.params.records,
        sm.params.rows,
        sm.params.tasks,
        csv_path=sm.output.csv,
        md_path=sm.output.md,
        tex_path=sm.output.tex,
    )
