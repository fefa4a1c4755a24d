#!/usr/bin/env python
"""Dense MiniLM (SST-2 head, untrained) and its SVD factorizations at rho 0.3 and 0.1,
saved as the workflow saves them, for a latency-only benchmark (weights' values do not
change latency; the ranks do): python scripts/bench/latency_models.py ROOT, then
python scripts/bench/latency.py ROOT --backends eager compile onnxruntime."""

import sys

from lpaf.compressed import save_compressed
from lpaf.factorize import factorize_model
from lpaf.modeling import load_for_task
from lpaf.tasks import get_task

root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lat/results/minilm-l6/SST-2"
model, tok = load_for_task("minilm-l6", get_task("SST-2"), seed=1)
model.eval().save_pretrained(f"{root}/finetune/seed1/model")
tok.save_pretrained(f"{root}/finetune/seed1/model")
for rho in (0.3, 0.1):
    m, _ = load_for_task("minilm-l6", get_task("SST-2"), seed=1)
    m.eval()
    factorize_model(m, "svd", rho=rho)
    save_compressed(
        m,
        tok,
        f"{root}/recover/svd/rho{rho}/seed1/model",
        {"method": "svd", "stage": "recover", "task": "SST-2", "seed": 1, "rho_target": rho},
    )
print("ok")
