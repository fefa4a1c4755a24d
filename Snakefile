# lpaf: Low-Rank Prune-And-Factorize as a Snakemake workflow.
# One rules file per stage of METHOD.md in workflow/rules/ (README "Architecture"), each
# with its paths, input functions, rules and the tables and figures it adds to PAPER;
# this file reads the config, includes them and names the targets.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/finetune.smk"  # stage 1
include: "workflow/rules/prune.smk"  # stage 2
include: "workflow/rules/rank_analysis.smk"  # stage 3
include: "workflow/rules/factorize.smk"  # stage 4
include: "workflow/rules/recover.smk"  # stage 5 and the comparison
include: "workflow/rules/evaluate.smk"  # stage 6, for any saved model


# Kept here, not in an included file: Snakemake only honours default_target for rules
# of the main Snakefile (snakemake/snakemake#2773).
rule all:
    default_target: True
    input:
        PAPER,


# Every table and figure of the paper. `make figures` reruns the rules that build them
# from results already on disk (it never trains): snakemake paper --forcerun <them>.
rule paper:
    input:
        PAPER,
