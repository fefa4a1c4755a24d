# Stage 4 of METHOD.md: factorize every target matrix of a fine-tuned or pruned model
# into two low-rank factors with a method of the registry (lpaf.methods: svd, fwsvd,
# sparsity_aware, sparsity_aware_rows) and a rank rule, and score the result before any
# training (lpaf.factorize; paths and input functions: lpaf.factorize.paths); then the
# table and figure of those scores. factorize_gradients runs the gradient pass (Fisher
# rows for fwsvd, |W*G| for the sparsity-aware methods on the dense source) once per
# source x task x seed, for every rho and method.
from lpaf.sources import SEGMENT_PATTERN, to_segment

FACTORIZE = config["factorize"]
FACTORIZE_RUN = (
    "results/{model}/{task}/factorize/{source}/{method}/{rank_rule}/rho{rho}/seed{seed}"
)
FACTORIZE_GRADIENTS = (
    "results/{model}/{task}/factorize/{source}/gradients/seed{seed}/{kind}.safetensors"
)
# sources x methods (methods_by_source overrides methods per source) x rhos x tasks x seeds
FACTORIZE_INIT = [
    path
    for source in FACTORIZE["sources"]
    for path in expand(
        f"{FACTORIZE_RUN}/metrics_init.json",
        model=MODEL,
        task=TASKS,
        source=to_segment(source),
        method=FACTORIZE["methods_by_source"].get(source, FACTORIZE["methods"]),
        rank_rule=FACTORIZE["rank_rule"],
        rho=[label(r) for r in FACTORIZE["rhos"]],
        seed=SEEDS,
    )
]
PAPER += [
    "results/tables/factorize_init.csv",
    "results/tables/factorize_init.md",
    "results/figures/init_vs_rho.png",
]


rule factorize_gradients:
    input:
        model=factorize_paths.source_model,
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
        unpack(lambda wildcards: factorize_paths.inputs(config, wildcards)),
    output:
        model=directory(f"{FACTORIZE_RUN}/model"),
        reconstruction=f"{FACTORIZE_RUN}/reconstruction.csv",
        predictions=f"{FACTORIZE_RUN}/predictions_init.tsv",
        metrics=f"{FACTORIZE_RUN}/metrics_init.json",
    log:
        "results/logs/{model}/{task}/factorize/{source}/{method}/{rank_rule}/rho{rho}/seed{seed}.log",
    wildcard_constraints:
        source=SEGMENT_PATTERN,
        method=lpaf.methods.alternation(lpaf.methods.FACTORIZE_METHODS),
        rank_rule=lpaf.methods.alternation(lpaf.methods.RANK_RULES),
    conda:
        "../../envs/lpaf.yaml"
    threads: config["threads"]
    resources:
        **({"gpu": 1} if CUDA else {}),
        mem_mb=8000 if CUDA else 6000,
        runtime=lambda wildcards: factorize_paths.runtime_minutes(
            config, wildcards, CUDA
        ),
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
