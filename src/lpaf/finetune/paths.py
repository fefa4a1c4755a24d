"""Stage 1's results layout, read by ``workflow/rules/finetune.smk`` and by the later
stages' input functions."""

RUN = "results/{model}/{task}/finetune/seed{seed}"
