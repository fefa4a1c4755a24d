# Tables and figures built only from results on disk (the `paper` target reruns these).


rule table_finetune:
    input:
        evaluations=expand(
            "results/{model}/{task}/finetune/seed{seed}/evaluation.json",
            model=MODEL,
            task=TASKS,
            seed=SEEDS,
        ),
        metrics=expand(
            "results/{model}/{task}/finetune/seed{seed}/metrics.json",
            model=MODEL,
            task=TASKS,
            seed=SEEDS,
        ),
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
        logs=expand(
            "results/{model}/{task}/finetune/seed{seed}/train_log.csv",
            model=MODEL,
            task=TASKS,
            seed=SEEDS,
        ),
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
