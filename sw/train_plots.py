"""PNG plots of a training run: curves per stage, zero-trit fraction per layer, alpha histogram."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(metrics: list[dict], path: Path):
    """Train/test loss and accuracy per epoch, stages one after another, coloured by stage."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    x0 = 0
    for stage in dict.fromkeys(m["stage"] for m in metrics):
        rows = [m for m in metrics if m["stage"] == stage and m["epoch"] > 0]
        if not rows:
            continue
        xs = np.arange(x0 + 1, x0 + len(rows) + 1)
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            line, = ax.plot(xs, [r[f"train_{key}"] for r in rows], "--", label=f"{stage} train")
            ax.plot(xs, [r[f"test_{key}"] for r in rows], "-", color=line.get_color(), label=f"{stage} test")
        x0 += len(rows)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch (stages in order)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_zero_fraction(layers: list[tuple[str, float]], path: Path):
    """Bar chart: fraction of zero trits per ternary layer."""
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(layers)), 4))
    ax.bar(range(len(layers)), [z for _, z in layers])
    ax.set_xticks(range(len(layers)), [n for n, _ in layers], rotation=90, fontsize=7)
    ax.set_ylabel("fraction of zero trits")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_alpha_hist(alphas: np.ndarray, path: Path):
    """Histogram of the per-channel ternary scales alpha over all ternary layers."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(alphas, bins=60)
    ax.set_xlabel("per-channel scale alpha")
    ax.set_ylabel("channels")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
