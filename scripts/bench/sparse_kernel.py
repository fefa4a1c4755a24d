"""torch's CSR sparse-dense product against the dense kernel for pruned weights, in
one run: each MiniLM-L6 target shape at densities 0.5/0.3/0.1 (random unstructured
masks, as magnitude or first-order pruning leaves them), at the token counts of
batch 1 and batch 32 at length 128.

    python scripts/bench/sparse_kernel.py [--threads 2] [--repeats 20]
        [--densities 0.5 0.3 0.1] [--tokens 128 4096] [--out x.csv]

Per row: dense ms (``F.linear`` on the masked dense weight), CSR ms (``F.linear`` on
``weight.to_sparse_csr()``), and ``csr_speedup = dense / csr`` (above 1: CSR wins),
beside ``1 / density``, the most a kernel that skips zeros could gain.
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lpaf.io import write_dataframe  # noqa: E402

SHAPES = {
    "attention 384x384": (384, 384),
    "intermediate 1536x384": (1536, 384),
    "output 384x1536": (384, 1536),
}  # (out, in)


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.5, 0.3, 0.1])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 4096])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, (out, inp) in SHAPES.items():
            for density in args.densities:
                weight = torch.randn(out, inp, generator=generator)
                weight[torch.rand(out, inp, generator=generator) >= density] = 0.0
                csr = weight.to_sparse_csr()
                for tokens in args.tokens:
                    x = torch.randn(tokens, inp, generator=generator)
                    err = (F.linear(x, weight) - F.linear(x, csr)).abs().max().item()
                    dense_ms = _time(lambda: F.linear(x, weight), args.repeats)  # noqa: B023
                    csr_ms = _time(lambda: F.linear(x, csr), args.repeats)  # noqa: B023
                    rows.append(
                        {
                            "shape": name,
                            "density": density,
                            "tokens": tokens,
                            "dense_ms": dense_ms,
                            "csr_ms": csr_ms,
                            "csr_speedup": dense_ms / csr_ms,
                            "bound": 1 / density,
                            "max_abs_diff": err,
                            "threads": args.threads,
                        }
                    )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        write_dataframe(args.out, table)


if __name__ == "__main__":
    main()
