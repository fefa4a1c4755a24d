# Stage 3 of METHOD.md: rank statistics and singular values of the target matrices of
# the fine-tuned model and of every pruned one of the sweep (prune.smk); the paper's
# preliminary figure, the spectra figure and the pruning table, built from the files
# on disk (lpaf.rank, lpaf.prune.results).

PRUNE_RUNS = expand(
    PRUNE_RUN,
    model=MODEL,
    task=TASKS,
    method=PRUNE_SWEEP_METHODS,
    density=PRUNE_SWEEP_DENSITIES,
    seed=SEEDS,
)
# fig_spectra: the fine-tuned model and every method at one density, first seed.
SPECTRA_DENSITY = (
    label(config["rank_analysis"]["spectra_density"])
    if config["rank_analysis"]["spectra_density"] is not None
    else min(PRUNE_SWEEP_DENSITIES, key=float)
)
PAPER += [
    "results/tables/prune.csv",
    "results/tables/prune.md",
    "results/figures/rank_vs_retained.png",
    "results/figures/rank_vs_retained.pdf",
    "results/figures/spectra.png",
    "results/figures/spectra.pdf",
]


rule rank_analysis:
    input:
        model="results/{model}/{task}/{run}/model",
    output:
        stats="results/{model}/{task}/{run}/rank_stats.csv",
        spectra="results/{model}/{task}/{run}/singular_values.safetensors",
    log:
        "results/logs/{model}/{task}/{run}/rank_analysis.log",
    wildcard_constraints:
        run=r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/rank_analysis.py"


rule table_prune:
    input:
        evaluations=[f"{run}/evaluation.json" for run in FINETUNE_RUNS + PRUNE_RUNS],
        rank_stats=[f"{run}/rank_stats.csv" for run in FINETUNE_RUNS + PRUNE_RUNS],
        metrics=[f"{run}/metrics.json" for run in FINETUNE_RUNS + PRUNE_RUNS],
    output:
        csv=report(
            "results/tables/prune.csv",
            caption="../report/table_prune.rst",
            category="Tables",
        ),
        md="results/tables/prune.md",
    log:
        "results/logs/tables/prune.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/table_prune.py"


rule fig_rank_vs_retained:
    input:
        evaluations=[f"{run}/evaluation.json" for run in FINETUNE_RUNS + PRUNE_RUNS],
        rank_stats=[f"{run}/rank_stats.csv" for run in FINETUNE_RUNS + PRUNE_RUNS],
        metrics=[f"{run}/metrics.json" for run in FINETUNE_RUNS + PRUNE_RUNS],
    output:
        png=report(
            "results/figures/rank_vs_retained.png",
            caption="../report/fig_rank_vs_retained.rst",
            category="Figures",
        ),
        pdf="results/figures/rank_vs_retained.pdf",
    log:
        "results/logs/figures/rank_vs_retained.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/fig_rank_vs_retained.py"


rule fig_spectra:
    input:
        spectra=expand(
            "results/{model}/{task}/{run}/singular_values.safetensors",
            model=MODEL,
            task=TASKS,
            run=[f"finetune/seed{SEEDS[0]}"]
            + [
                f"prune/{method}/density{SPECTRA_DENSITY}/seed{SEEDS[0]}"
                for method in PRUNE_SWEEP_METHODS
            ],
        ),
    output:
        png=report(
            "results/figures/spectra.png",
            caption="../report/fig_spectra.rst",
            category="Figures",
        ),
        pdf="results/figures/spectra.pdf",
    log:
        "results/logs/figures/spectra.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        layer=config["rank_analysis"]["spectra_layer"],
    script:
        "../scripts/fig_spectra.py"
