"""PNG plots of a results.json: latency by size, compile time vs N, memory and step time vs N.

.venv/bin/python bench/plots.py bench/results/results.json   # re-draw from a saved run
"""

from __future__ import annotations

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["write_all"]

COLORS = {
    "ours": "#1f77b4",
    "jax": "#7f7f7f",
    "peer": "#ff7f0e",
    "recipe": "#d62728",
    "limit": "#2ca02c",
}


def _subtitle(res, what="bars within one panel") -> str:
    m = res["machine"]
    return (
        f"{m['date']}, {m['nproc']} cores {m['cpu']}, jax {m['versions']['jax']}; "
        f"shared machine: compare {what}"
    )


def latency(res, path):
    lat = res["latency"]
    fig, axes = plt.subplots(1, len(lat), figsize=(6 * len(lat), 6.5), sharey=True)
    for ax, (size, d) in zip(axes, lat.items(), strict=True):
        rows = [
            (k, r)
            for k, r in d["rows"].items()
            if "median_s" in r and k != "seed_recipe" and not k.startswith("peak_")
        ]
        labels = [r["name"] for _, r in rows]
        # the trivial call is drawn at the small size only (it would squash the others'
        # log scale), but keeps its row so that the shared y axis stays aligned
        keep = [k != "trivial_jit" or size == "small" for k, _ in rows]
        med = [r["median_s"] * 1e6 if ok else float("nan") for (_, r), ok in zip(rows, keep)]
        lo = [r["min_s"] * 1e6 if ok else float("nan") for (_, r), ok in zip(rows, keep)]
        y = range(len(rows))
        ax.barh(y, med, color=[COLORS[r["group"]] for _, r in rows])
        ax.plot(lo, y, "k|", markersize=10, label="min")
        if "limit_s" in d:
            limit = d["limit_s"] * 1e6
            ax.axvline(
                limit,
                color=COLORS["limit"],
                ls="--",
                label=f"matmul-peak limit {limit:.3g} us ({d['peak_gflops']:.0f} GFLOP/s)",
            )
        ax.set_xscale("log")
        floor = min([v for v in lo if v == v] + ([d["limit_s"] * 1e6] if "limit_s" in d else []))
        ax.set_xlim(left=floor / 2)
        if ax is axes[0]:  # the panels share one y axis: label it once
            ax.set_yticks(list(y), labels)
            ax.invert_yaxis()
        ax.set_title(f"{size}: B={d['B']} N={d['N']} F={d['F']}")
        ax.set_xlabel("forward latency, us (bar: median; |: min; log)")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "Steady-state forward latency (blue: ours; grey: JAX by hand; orange: other "
        "libraries; the seed's recipe, at ~1 s, is left out)\n" + _subtitle(res),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def compile_time(res, path):
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for f in res["compile"].values():
        if not f["by_n"]:
            continue
        ns = sorted(int(n) for n in f["by_n"])
        total = [f["by_n"][str(n)]["total"]["median_s"] for n in ns]
        ax.plot(ns, total, "-o" if f["scanned"] else "--s", label=f["name"], markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N layers (log)")
    ax.set_ylabel("trace + lower + compile, s (median, log)")
    ax.set_title(
        "Compile time vs depth, B=64 F=256: scanned (solid) vs unrolled (dashed)\n"
        + _subtitle(res, "lines within one plot"),
        fontsize=9,
    )
    ax.grid(which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def memory(res, path):
    train = res["train"]
    fig, axes = plt.subplots(2, len(train), figsize=(6.5 * len(train), 8))
    for col, block in enumerate(train.values()):
        for policy, by_n in block["by_policy"].items():
            ns = sorted(int(n) for n in by_n)
            axes[0, col].plot(
                ns,
                [by_n[str(n)]["grad_temp_bytes"] / 1e6 for n in ns],
                "-o",
                label=f"remat {policy}",
                markersize=4,
            )
            axes[1, col].plot(
                ns,
                [by_n[str(n)]["step"]["median_s"] * 1e3 for n in ns],
                "-o",
                label=f"remat {policy}",
                markersize=4,
            )
        axes[0, col].set_title(f"{block['name']}: scratch of value_and_grad (XLA)")
        axes[0, col].set_ylabel("MB")
        axes[1, col].set_title(f"{block['name']}: SGD step time (median)")
        axes[1, col].set_ylabel("ms")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("N layers")
            ax.grid(which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        "Training memory and step time vs depth, B=64 F=256\n"
        + _subtitle(res, "lines within one plot"),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_all(res: dict, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Draw every plot the results allow; return the paths written."""
    written = []
    for key, fn, name in (
        ("latency", latency, "latency.png"),
        ("compile", compile_time, "compile_time.png"),
        ("train", memory, "memory.png"),
    ):
        if key in res:
            fn(res, out_dir / name)
            written.append(out_dir / name)
    return written


if __name__ == "__main__":
    src = pathlib.Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else pathlib.Path(__file__).parent / "results" / "results.json"
    )
    for p in write_all(json.loads(src.read_text()), src.parent):
        print(p)
