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

# --- prune / rank_analysis (stages 2 and 3) ---
FIGURES_AND_TABLES += [
    "results/tables/prune.csv",
    "results/tables/prune.md",
    "results/figures/rank_vs_retained.png",
    "results/figures/rank_vs_retained.pdf",
    "results/figures/spectra.png",
    "results/figures/spectra.pdf",
]
# --- end prune / rank_analysis ---

# --- recover / comparison (stage 5) ---
if config["study"]["main_table"]:
    FIGURES_AND_TABLES += [
        "results/tables/main.csv",
        "results/tables/main.md",
        "results/tables/main.tex",
        "results/figures/score_vs_rho.png",
    ]
if config["study"]["ablations"]:
    FIGURES_AND_TABLES += [
        "results/tables/ablation.csv",
        "results/tables/ablation.md",
        "results/tables/ablation.tex",
    ]
# --- end recover / comparison ---
