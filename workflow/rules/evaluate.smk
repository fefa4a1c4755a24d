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
