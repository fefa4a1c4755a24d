# Stage 4 of METHOD.md: factorize every target matrix of a fine-tuned or pruned model
# into two low-rank factors (svd, fwsvd, sparsity_aware, sparsity_aware_rows) and score
# the result before any training; then the table and figure of those scores.
#
# Input and resource functions: workflow/rules/common.smk. factorize_gradients runs the
# gradient pass (Fisher rows for fwsvd, |W*G| for sparsity-aware methods on the dense
# source) once per source x task x seed, for every rho and method.
# {source} is the config's source with / replaced by - (lpaf.sources):
# finetune, or prune-<method>-density<d> for results/{model}/{task}/prune/<method>/density<d>/.
from lpaf.sources import SEGMENT_PATTERN, to_segment

FACTORIZE = config["factorize"]
FACTORIZE_RHOS = [f"{float(r):g}" for r in FACTORIZE["rhos"]]
# sources x methods (methods_by_source overrides methods per source) x rhos x tasks x seeds
FACTORIZE_INIT = [
    path
    for source in FACTORIZE["sources"]
    for path in expand(
        "results/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}/metrics_init.json",
        model=MODEL,
        task=TASKS,
        source=to_segment(source),
        svd=FACTORIZE["methods_by_source"].get(source, FACTORIZE["methods"]),
        rho=FACTORIZE_RHOS,
        seed=SEEDS,
    )
]


rule factorize_gradients:
    input:
        model=factorize_source_model,
    output:
        fisher=FACTORIZE_GRADIENTS.replace("{kind}", "fisher"),
        taylor=FACTORIZE_GRADIENTS.replace("{kind}", "taylor"),
    log:
        "results/logs/{model}/{task}/factorize/{source}/gradients/seed{seed}.log",
    wildcard_constraints:
        source=SEGMENT_PATTERN,
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **({"gpu": 1} if CUDA else {}),
        mem_mb=8000 if CUDA else 6000,
        runtime=60,
    script:
        "../scripts/factorize_gradients.py"


rule factorize:
    input:
        unpack(factorize_inputs),
    output:
        model=directory(
            "results/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}/model"
        ),
        reconstruction="results/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}/reconstruction.csv",
        predictions="results/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}/predictions_init.tsv",
        metrics="results/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}/metrics_init.json",
    log:
        "results/logs/{model}/{task}/factorize/{source}/{svd}/rho{rho}/seed{seed}.log",
    wildcard_constraints:
        source=SEGMENT_PATTERN,
        svd="(svd|fwsvd|sparsity_aware|sparsity_aware_rows)(-uniform|-global_energy)?",
        rho=r"[0-9]*\.?[0-9]+",
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **({"gpu": 1} if CUDA else {}),
        mem_mb=8000 if CUDA else 6000,
        runtime=factorize_runtime,
    script:
        "../scripts/factorize.py"


rule table_factorize_init:
    input:
        metrics=FACTORIZE_INIT,
    output:
        csv=report(
            "results/tables/factorize_init.csv",
            caption="../report/table_factorize_init.rst",
            category="Tables",
        ),
        md="results/tables/factorize_init.md",
    log:
        "results/logs/tables/factorize_init.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/table_factorize_init.py"


rule fig_init_vs_rho:
    input:
        metrics=FACTORIZE_INIT,
    output:
        png=report(
            "results/figures/init_vs_rho.png",
            caption="../report/fig_init_vs_rho.rst",
            category="Figures",
        ),
        pdf="results/figures/init_vs_rho.pdf",
    log:
        "results/logs/figures/init_vs_rho.log",
    conda:
        "../../envs/lpaf.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/fig_init_vs_rho.py"
