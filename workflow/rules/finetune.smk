# Stage 1 of METHOD.md: dense fine-tuning of the encoder on the task (the teacher).


rule finetune:
    output:
        model=directory("results/{model}/{task}/finetune/seed{seed}/model"),
        metrics="results/{model}/{task}/finetune/seed{seed}/metrics.json",
        train_log="results/{model}/{task}/finetune/seed{seed}/train_log.csv",
        predictions="results/{model}/{task}/finetune/seed{seed}/predictions.tsv",
    log:
        "results/logs/{model}/{task}/finetune/seed{seed}.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **train_resources("finetune"),
    script:
        "../scripts/finetune.py"
