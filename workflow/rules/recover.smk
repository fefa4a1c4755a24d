# Stage 5 of METHOD.md (recovery fine-tuning of the factorized model, lpaf.recover) and
# the method comparison: every pipeline of config `pipelines` named in `study` runs at
# every rho of the study with the same training budget. lpaf.recover.paths maps a
# pipeline at a rho to its prune, factorize and recover runs (the stages' own path
# templates) and lists the runs each table reads.

RECOVER_RUN = recover_paths.RUN

if config["study"]["main_table"]:
    PAPER += [
        "results/tables/main.csv",
        "results/tables/main.md",
        "results/tables/main.tex",
        "results/figures/score_vs_rho.png",
    ]
CURVE_RECORDS = recover_paths.curve_records(config, MODEL)
if CURVE_RECORDS:
    PAPER += ["results/figures/recovery_curves.png"]
if config["study"]["ablations"]:
    PAPER += [
        "results/tables/ablation.csv",
        "results/tables/ablation.md",
        "results/tables/ablation.tex",
    ]


rule recover:
    input:
        unpack(lambda wildcards: recover_paths.inputs(config, wildcards)),
    output:
        model=directory(f"{RECOVER_RUN}/model"),
        metrics=f"{RECOVER_RUN}/metrics.json",
        train_log=f"{RECOVER_RUN}/train_log.csv",
        predictions=f"{RECOVER_RUN}/predictions.tsv",
    log:
        "results/logs/{model}/{task}/recover/{pipeline}/rho{rho}/seed{seed}.log",
    wildcard_constraints:
        pipeline=lpaf.methods.alternation(config["pipelines"]),
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **train_resources("recover"),
    params:
        # part of the job's identity: editing a pipeline reruns its recovery
        pipeline=lambda wildcards: config["pipelines"][wildcards.pipeline],
    script:
        "../scripts/recover.py"


MAIN_RECORDS = recover_paths.study_records(
    config, MODEL, "evaluation.json", config["study"]["main_table"]
)
ABLATION_RECORDS = recover_paths.study_records(
    config, MODEL, "evaluation.json", config["study"]["ablations"]
)


rule table_main:
    input:
        [r["path"] for r in MAIN_RECORDS],
    output:
        csv=report(
            "results/tables/main.csv",
            caption="../report/table_main.rst",
            category="Tables",
        ),
        md="results/tables/main.md",
        tex="results/tables/main.tex",
    log:
        "results/logs/tables/main.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        records=MAIN_RECORDS,
        rows=config["study"]["main_table"],
        tasks=TASKS,
    script:
        "../scripts/table_comparison.py"


rule table_ablation:
    input:
        [r["path"] for r in ABLATION_RECORDS],
        [r["init"] for r in ABLATION_RECORDS if r["init"]],
    output:
        csv=report(
            "results/tables/ablation.csv",
            caption="../report/table_ablation.rst",
            category="Tables",
        ),
        md="results/tables/ablation.md",
        tex="results/tables/ablation.tex",
    log:
        "results/logs/tables/ablation.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        records=ABLATION_RECORDS,
        rows=config["study"]["ablations"],
        tasks=TASKS,
    script:
        "../scripts/table_comparison.py"


rule fig_score_vs_rho:
    input:
        [r["path"] for r in MAIN_RECORDS],
    output:
        png=report(
            "results/figures/score_vs_rho.png",
            caption="../report/fig_score_vs_rho.rst",
            category="Figures",
        ),
        pdf="results/figures/score_vs_rho.pdf",
    log:
        "results/logs/figures/score_vs_rho.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        records=MAIN_RECORDS,
        rows=config["study"]["main_table"],
    script:
        "../scripts/fig_score_vs_rho.py"


rule fig_recovery_curves:
    input:
        logs=[r["path"] for r in CURVE_RECORDS],
        # the constant predictor's score, read beside each log
        metrics=[
            r["path"].replace("train_log.csv", "metrics.json") for r in CURVE_RECORDS
        ],
    output:
        png=report(
            "results/figures/recovery_curves.png",
            caption="../report/fig_recovery_curves.rst",
            category="Figures",
        ),
        pdf="results/figures/recovery_curves.pdf",
    log:
        "results/logs/figures/recovery_curves.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        records=CURVE_RECORDS,
    script:
        "../scripts/fig_recovery_curves.py"
