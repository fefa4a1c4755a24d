# What the configured study produces. `rule all` (in the Snakefile, since Snakemake
# ignores default_target in included files: snakemake/snakemake#2773) requests these.

FIGURES_AND_TABLES = [
    "results/tables/finetune.csv",
    "results/tables/finetune.md",
    "results/figures/finetune_curves.png",
]

# --- factorize (stage 4) ---
FIGURES_AND_TABLES += [
    "results/tables/factorize_init.csv",
    "results/tables/factorize_init.md",
    "results/figures/init_vs_rho.png",
]
# --- end factorize ---
