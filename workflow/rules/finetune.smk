# Stage 1 of METHOD.md: dense fine-tuning of the encoder on the task (the teacher), and
# its table and training curves (lpaf.finetune).

FINETUNE_RUN = finetune_paths.RUN
FINETUNE_RUNS = expand(FINETUNE_RUN, model=MODEL, task=TASKS, seed=SEEDS)
PAPER += [
    "results/tables/finetune.csv",
    "results/tables/finetune.md",
    "results/figures/finetune_curves.png",
]


rule finetune:
    output:
        model=directory(f"{FINETUNE_RUN}/model"),
        metrics=f"{FINETUNE_RUN}/metrics.json",
        train_log=f"{FINETUNE_RUN}/train_log.csv",
        predictions=f"{FINETUNE_RUN}/predictions.tsv",
    log:
        "results/logs/{model}/{task}/finetune/seed{seed}.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **train_resources("finetune"),
    script:
        "../scripts/finetune.py"


rule table_finetune:
    input:
        evaluations=[f"{run}/evaluation.json" for run in FINETUNE_RUNS],
        metrics=[f"{run}/metrics.json" for run in FINETUNE_RUNS],
    output:
        csv=report(
            "results/tables/finetune.csv",
            caption="../report/table_finetune.rst",
            category="Tables",
        ),
        md="results/tables/finetune.md",
    log:
        "results/logs/tables/finetune.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/table_finetune.py"


rule fig_finetune_curves:
    input:
        logs=[f"{run}/train_log.csv" for run in FINETUNE_RUNS],
    output:
        png=report(
            "results/figures/finetune_curves.png",
            caption="../report/fig_finetune_curves.rst",
            category="Figures",
        ),
        pdf="results/figures/finetune_curves.pdf",
    log:
        "results/logs/figures/finetune_curves.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/fig_finetune_curves.py"
