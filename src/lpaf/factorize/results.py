"""Table and figure of stage 4 (factorize), built from the ``metrics_init.json`` files
on disk: the dev score of every factorized model before any training."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lpaf.evaluate.constant import COLLAPSE_NOTE, flag
from lpaf.io import read_json, write_dataframe, write_text
from lpaf.sources import label
from lpaf.tables import SCORE_SCALE, add_seed_summary, constant_fields, constant_line

GROUP = ("model", "task", "source", "method", "rank_rule", "rho")
METHOD_ORDER = ("svd", "fwsvd", "sparsity_aware", "sparsity_aware_rows")


def _method_key(method: str) -> tuple[int, str]:
    base = method.split(" ")[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def factorize_init_rows(metrics_paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per factorized model (model x task x source x method x rho x seed)."""
    rows = []
    for path in metrics_paths:
        m = read_json(path)
        params = m["parameters"]
        primary = next(iter(m["metrics"].values()))
        fidelity = m.get("fidelity") or {}
        other = {
            name: SCORE_SCALE * value
            for name, value in primary.items()
            if name not in ("main", m["main_metric"])
        }
        rows.append(
            {
                "model": m["model_tag"],
                "task": m["task"],
                "source": m["source"],
                "method": m["method"],
                "rank_rule": m["rank_rule"],
                "rho": label(m["rho_target"]),
                "seed": str(m["seed"]),
                "metric": m["main_metric"],
                "score": SCORE_SCALE * m["main"],
                **constant_fields(m),
                **other,
                "rho_achieved": m["rho_achieved"],
                "source_score": SCORE_SCALE * fidelity["source_main"] if fidelity else None,
                "agreement": SCORE_SCALE * fidelity["agreement"]
                if "agreement" in fidelity
                else None,
                "kl_from_source": fidelity.get("kl_from_source"),
                "mse_to_source": fidelity.get("mse_to_source"),
                "dev_loss": fidelity.get("dev_loss"),
                "source_dev_loss": fidelity.get("source_dev_loss"),
                "params_total": params["total"],
                "params_non_embedding": params["non_embedding"],
                "params_targets": params["targets_compressed"],
                "macs_targets": m["macs_per_token"]["targets"],
                "mean_error": m["reconstruction"]["mean_error"],
                "mean_kept_error": m["reconstruction"]["mean_kept_error"],
                "importance": m["importance"],
                "stage_seconds": m["timing"]["stage_seconds"],
                "plain_svd_seconds": m["timing"]["plain_svd_seconds"],
                "device": m["environment"]["device"],
                "precision": m.get("precision"),
            }
        )
    return pd.DataFrame(rows)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return (
        table.assign(_m=table["method"].map(_method_key), _r=-table["rho"].astype(float))
        .sort_values(["model", "task", "source", "_m", "_r", "seed"], kind="stable")
        .drop(columns=["_m", "_r"])
    )


def factorize_init_table(metrics_paths: Iterable[str | Path]) -> pd.DataFrame:
    """Per-seed rows plus ``seed = mean`` / ``seed = std`` rows for every model x task x
    source x method x rho (see :func:`lpaf.tables.add_seed_summary`)."""
    table = factorize_init_rows(metrics_paths)
    if table.empty:
        return table
    return add_seed_summary(_sorted(table), group_by=GROUP)


def _mean_std(values: pd.Series) -> str:
    text = f"{values.mean():.2f}"
    return text + (f" ± {values.std():.2f}" if len(values) > 1 else "")


def factorize_init_markdown(table: pd.DataFrame) -> str:
    """For every model x task x source: methods as rows, rho as columns, cells
    ``mean ± std`` of the score before training (± only with several seeds) and the
    rho achieved; then the per-seed rows."""
    if table.empty:
        return "No factorized models.\n"
    per_seed = table[~table["seed"].isin(["mean", "std"])]
    lines = []
    for (model, task, source), block in per_seed.groupby(["model", "task", "source"], sort=False):
        rhos = sorted(block["rho"].unique(), key=float, reverse=True)
        metric = block["metric"].iloc[0]
        if block["rank_rule"].nunique() > 1:  # name the rank rule where it varies
            block = block.assign(method=block["method"] + " (" + block["rank_rule"] + ")")
        # a second metric of the task (MRPC, QQP: accuracy next to F1) when there is one
        second = next(
            (c for c in ("accuracy", "spearman") if c in block and block[c].notna().all()), None
        )
        lines.append(f"### {model} / {task} / from `{source}`: {metric} before training")
        lines.append("")
        if block["source_score"].notna().all():
            sources = block.drop_duplicates("seed")  # one source model per seed
            lines.append(
                f"The source model itself: {metric} {_mean_std(sources['source_score'])}"
                + (
                    f", dev loss {sources['source_dev_loss'].mean():.4f}."
                    if sources["source_dev_loss"].notna().all()
                    else "."
                )
            )
            lines.append("")
        summary = []
        for method, group in sorted(block.groupby("method"), key=lambda kv: _method_key(kv[0])):
            row = {"method": method}
            for rho in rhos:
                cell = group[group["rho"] == rho]
                if cell.empty:
                    row[f"rho {rho}"] = ""
                    continue
                text = " / ".join(_mean_std(cell[c]) for c in ("score", second) if c is not None)
                collapsed = "collapsed" in cell and cell["collapsed"].fillna(0).max() > 0
                row[f"rho {rho}"] = flag(text, bool(collapsed))
            summary.append(row)
        achieved = {"method": "rho achieved"}
        for rho in rhos:
            achieved[f"rho {rho}"] = f"{block[block['rho'] == rho]['rho_achieved'].mean():.4f}"
        summary.append(achieved)
        lines.append(pd.DataFrame(summary).to_markdown(index=False))
        lines.append("")
        shown = metric + (f" / {second}" if second else "")
        lines.append(
            f"Cells: {shown} in percent, mean ± std over seeds "
            f"(seeds: {', '.join(sorted(block['seed'].unique()))})."
            + (f" {constant_line(block, metric)} {COLLAPSE_NOTE}" if "collapsed" in block else "")
        )
        lines.append("")
        fidelity = [
            c
            for c in ("agreement", "kl_from_source", "mse_to_source", "dev_loss")
            if c in block and block[c].notna().all()
        ]
        if fidelity:
            rows = []
            for method, group in sorted(block.groupby("method"), key=lambda kv: _method_key(kv[0])):
                row = {"method": method}
                for rho in rhos:
                    cell = group[group["rho"] == rho]
                    row[f"rho {rho}"] = (
                        ""
                        if cell.empty
                        else " / ".join(
                            f"{cell[c].mean():.2f}" if c == "agreement" else f"{cell[c].mean():.4g}"
                            for c in fidelity
                        )
                    )
                rows.append(row)
            lines.append(pd.DataFrame(rows).to_markdown(index=False))
            lines.append("")
            lines.append(
                f"Cells: {' / '.join(fidelity)} of the dev set, against the source model "
                "(agreement in percent; KL(source || factorized) in nats; loss = the "
                "factorized model's dev cross-entropy, or MSE for regression)."
            )
        lines.append("")
    lines.append("### Every run")
    lines.append("")
    counts = [c for c in per_seed.columns if c.startswith(("params_", "macs_"))]
    per_seed = per_seed.astype({c: "Int64" for c in counts})
    lines.append(per_seed.to_markdown(index=False, floatfmt=".4g"))
    return "\n".join(lines) + "\n"


def write_factorize_init_table(metrics_paths, csv_path, md_path) -> pd.DataFrame:
    table = factorize_init_table(metrics_paths)
    write_dataframe(csv_path, table)
    write_text(md_path, factorize_init_markdown(table))
    return table


def init_vs_rho(metrics_paths: Iterable[str | Path], png_path, pdf_path=None) -> None:
    """Score before training against rho: one panel per task x source, one line per
    method (mean over seeds, error bars = std when there are several seeds)."""
    import matplotlib.pyplot as plt

    from lpaf.figures import save_figure

    table = factorize_init_rows(metrics_paths)
    panels = sorted({(t, s) for t, s in zip(table["task"], table["source"], strict=True)})
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(4 * max(1, len(panels)), 3.2), squeeze=False
    )
    for ax, (task, source) in zip(axes[0], panels, strict=False):
        block = table[(table["task"] == task) & (table["source"] == source)]
        for method in sorted(block["method"].unique(), key=_method_key):
            stats = (
                block[block["method"] == method]
                .assign(rho=lambda d: d["rho"].astype(float))
                .groupby("rho")["score"]
                .agg(["mean", "std", "count"])
                .sort_index()
            )
            yerr = stats["std"].where(stats["count"] > 1)
            ax.errorbar(
                stats.index,
                stats["mean"],
                yerr=None if yerr.isna().all() else yerr.fillna(0),
                marker="o",
                capsize=3,
                label=method,
            )
        reference = block["source_score"].dropna()
        if not reference.empty:
            ax.axhline(reference.mean(), color="gray", linestyle="--", linewidth=1)
            ax.annotate(
                "source model",
                (0.02, reference.mean()),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="gray",
                va="bottom",
            )
        ax.set_title(f"{task}, from {source}", fontsize=9)
        ax.set_xlabel("rho (retained fraction of target weights)")
        ax.set_ylabel(f"{block['metric'].iloc[0]} before training (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)
