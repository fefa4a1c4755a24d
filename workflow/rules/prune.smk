# Stage 2 of METHOD.md: unstructured pruning of the target matrices during training
# (cubic schedule), starting from and distilling from the fine-tuned teacher.

PRUNE_METHODS = list(config["prune"]["methods"])
PRUNE_DENSITIES = [f"{float(d):g}" for d in config["prune"]["densities"]]
# the sweep's figure and table use the lists above; the rule also makes what the
# comparison's pipelines need (pruned to density = rho, lpaf.pipelines)
PRUNE_RULE_METHODS = sorted(set(PRUNE_METHODS) | STUDY_NEEDS["prune_methods"])
PRUNE_RULE_DENSITIES = sorted(set(PRUNE_DENSITIES) | STUDY_NEEDS["prune_densities"])
PRUNE_RUN = "results/{model}/{task}/prune/{method}/density{density}/seed{seed}"


rule prune:
    input:
        # the starting point (prune.init: finetuned), the distillation teacher and the
        # tokenizer; the figure's reference line in any case
        teacher="results/{model}/{task}/finetune/seed{seed}/model",
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
        method="|".join(re.escape(m) for m in PRUNE_RULE_METHODS),
        density="|".join(re.escape(d) for d in PRUNE_RULE_DENSITIES),
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **train_resources("prune"),
    script:
        "../scripts/prune.py"
