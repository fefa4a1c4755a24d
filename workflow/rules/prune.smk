# Stage 2 of METHOD.md: unstructured pruning of the target matrices during training
# (cubic schedule), starting from and distilling from the fine-tuned teacher
# (lpaf.prune). The rule makes any method of the registry (lpaf.methods) at any
# density a later stage asks for; the sweep below is what the stage-2/3 table and
# figures (rank_analysis.smk) show.

PRUNE_RUN = prune_paths.RUN
PRUNE_SWEEP_METHODS = list(config["prune"]["methods"])
PRUNE_SWEEP_DENSITIES = [label(d) for d in config["prune"]["densities"]]


rule prune:
    input:
        # the starting point (prune.init: finetuned), the distillation teacher and the
        # tokenizer; the figure's reference line in any case
        teacher=f"{FINETUNE_RUN}/model",
    output:
        model=directory(f"{PRUNE_RUN}/model"),
        masks=f"{PRUNE_RUN}/masks.safetensors",
        importance=f"{PRUNE_RUN}/importance.safetensors",
        metrics=f"{PRUNE_RUN}/metrics.json",
        train_log=f"{PRUNE_RUN}/train_log.csv",
        densities=f"{PRUNE_RUN}/densities.csv",
    log:
        "results/logs/{model}/{task}/prune/{method}/density{density}/seed{seed}.log",
    wildcard_constraints:
        method=lpaf.methods.alternation(lpaf.methods.PRUNE_METHODS),
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **train_resources("prune"),
    script:
        "../scripts/prune.py"
