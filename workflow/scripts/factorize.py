"""Rule `factorize`: see lpaf.stages.factorize."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821

from lpaf.snakemake_glue import job_logging  # noqa: E402
from lpaf.sources import from_segment  # noqa: E402
from lpaf.stages import factorize  # noqa: E402

sm = snakemake  # noqa: F821
# "{method}" uses factorize.rank_rule; "{method}-{rank_rule}" names its own (pipelines)
method, _, rank_rule = sm.wildcards.svd.partition("-")
with job_logging(sm):
    factorize(
        sm.config,
        task_name=sm.wildcards.task,
        seed=int(sm.wildcards.seed),
        source=from_segment(sm.wildcards.source),
        method=method,
        rho=float(sm.wildcards.rho),
        source_dir=sm.input.model,
        model_dir=sm.output.model,
        reconstruction_path=sm.output.reconstruction,
        predictions_path=sm.output.predictions,
        metrics_path=sm.output.metrics,
        masks_path=sm.input.get("masks"),
        importance_path=sm.input.get("importance"),
        threads=sm.threads,
        rank_rule=rank_rule or None,
        fisher_path=sm.input.get("fisher"),
        taylor_path=sm.input.get("taylor"),
    )
