# lpaf: Low-Rank Prune-And-Factorize as a Snakemake workflow.
# The stages live in workflow/rules/; this file reads the config, includes them and
# names the default target.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/prune.smk"  # stage 2
include: "workflow/rules/rank_analysis.smk"  # stage 3
include: "workflow/rules/factorize.smk"  # stage 4
include: "workflow/rules/recover.smk"  # stage 5 and the comparison
include: "workflow/rules/tables.smk"
include: "workflow/rules/targets.smk"


# Kept here, not in an included file: Snakemake only honours default_target for rules
# of the main Snakefile (snakemake/snakemake#2773).
rule all:
    default_target: True
    input:
        FIGURES_AND_TABLES,
