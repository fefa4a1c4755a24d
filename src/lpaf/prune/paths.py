"""Stage 2's results layout, read by ``workflow/rules/prune.smk`` and by the later
stages' input functions."""

RUN = "results/{model}/{task}/prune/{method}/density{density}/seed{seed}"
