# What the configured study produces. `rule all` (in the Snakefile, since Snakemake
# ignores default_target in included files: snakemake/snakemake#2773) requests these.

FIGURES_AND_TABLES = [
    "results/tables/finetune.csv",
    "results/tables/finetune.md",
    "results/figures/finetune_curves.png",
]
