# Stage 6 of METHOD.md for any saved model directory: dev metrics, parameter counts
# and inference latency measured on the job's device.


rule evaluate:
    input:
        model="results/{model}/{task}/{run}/model",
    output:
        "results/{model}/{task}/{run}/evaluation.json",
    log:
        "results/logs/{model}/{task}/{run}/evaluate.log",
    wildcard_constraints:
        run=r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*",
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **({"gpu": 1} if CUDA else {}),
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/evaluate.py"


# Stage 6 across models: the main table's models of the first seed, every backend of
# evaluate.latency_backends, all in one job so the ratios compare like with like
# (lpaf.bench). The reference of every ratio is the task's fine-tuned model.
BENCH_RECORDS = sorted(
    (r for r in MAIN_RECORDS if r["seed"] == int(config["seeds"][0])),
    key=lambda r: (r["task"], r["pipeline"] != lpaf.pipelines.REFERENCE),
)
if config["evaluate"]["latency_backends"] and BENCH_RECORDS:
    PAPER += ["results/tables/latency.csv", "results/figures/latency_vs_macs.png"]


rule bench:
    input:
        [os.path.join(os.path.dirname(r["path"]), "model") for r in BENCH_RECORDS],
    output:
        csv=report(
            "results/tables/latency.csv",
            caption="../report/table_latency.rst",
            category="Tables",
        ),
        png=report(
            "results/figures/latency_vs_macs.png",
            caption="../report/fig_latency_vs_macs.rst",
            category="Figures",
        ),
        pdf="results/figures/latency_vs_macs.pdf",
    log:
        "results/logs/tables/latency.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **({"gpu": 1} if CUDA else {}),
        mem_mb=6000,
        runtime=60,
    params:
        records=BENCH_RECORDS,
        settings=config["evaluate"],
    script:
        "../scripts/bench.py"
