"""The training curves of a run as a picture: training and validation loss, and the learning rate."""

from __future__ import annotations

from pathlib import Path


def plot_curves(log: list[dict], out_path: Path, title: str) -> Path:
    """Plot loss (train and validation) and learning rate against the optimizer step into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in log if "eval_loss" in r]
    rate = [(r["step"], r["learning_rate"]) for r in log if "learning_rate" in r]
    figure, (loss_axes, rate_axes) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True,
                                                  gridspec_kw={"height_ratios": [3, 1]})
    if train:
        loss_axes.plot(*zip(*train), label="training loss", color="tab:blue")
    if val:
        loss_axes.plot(*zip(*val), "o-", label="validation loss", color="tab:orange")
        best_step, best_loss = min(val, key=lambda point: point[1])
        loss_axes.axvline(best_step, color="tab:orange", linestyle=":", label=f"best (step {best_step})")
    loss_axes.set_ylabel("cross-entropy")
    loss_axes.set_title(title)
    loss_axes.grid(alpha=0.3)
    loss_axes.legend()
    if rate:
        rate_axes.plot(*zip(*rate), color="tab:green")
    rate_axes.set_ylabel("learning rate")
    rate_axes.set_xlabel("optimizer step")
    rate_axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path
