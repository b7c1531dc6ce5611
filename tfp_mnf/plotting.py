"""Figures of predictive uncertainty (matplotlib, Agg backend, written to PNG files).

- `plot_rotated_digit`: the MNF paper's rotated-digit figure (Louizos & Welling 2017,
  arXiv:1703.01961, section 4.1, as drawn by the TF-MNF seed): one panel per rotation angle,
  violins of the Monte Carlo softmax samples per class (bars for a deterministic model) with
  the rotated image inset.
- `plot_entropy`: histogram and empirical CDF of predictive entropy in- vs
  out-of-distribution (the paper's notMNIST figure).
- `plot_regression_band`: 1-D predictive mean and +-2 std band against the training data.
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def _save(fig: plt.Figure, path: str, dpi: int) -> str:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_rotated_digit(
    images: np.ndarray,
    angles_deg: np.ndarray,
    prob_samples: np.ndarray,
    path: str,
    title: str = "",
    dpi: int = 80,
) -> str:
    """Draws class probabilities of a digit at several rotations, one panel per angle.

    Args:
      images: rotated images `[A, H, W]` or `[A, H, W, 1]`, drawn as insets.
      angles_deg: the `A` rotation angles, used as panel titles.
      prob_samples: softmax samples `[A, S, C]`; S > 1 gives violins, S = 1 bars.
      path: output PNG path.
      title: figure title.
      dpi: resolution of the PNG.

    Returns:
      `path`.
    """
    prob_samples = np.asarray(prob_samples, dtype=np.float64)
    images = np.asarray(images)
    angles = np.asarray(angles_deg).ravel()
    if prob_samples.ndim != 3:
        raise ValueError(f"`prob_samples` must have shape [A, S, C], got {prob_samples.shape}.")
    num_angles, num_samples, num_classes = prob_samples.shape
    if images.shape[0] != num_angles or angles.size != num_angles:
        raise ValueError(
            f"`images` ({images.shape[0]}) and `angles_deg` ({angles.size}) must have one "
            f"entry per panel of `prob_samples` ({num_angles})."
        )
    cols = math.ceil(math.sqrt(num_angles))
    rows = math.ceil(num_angles / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    classes = np.arange(num_classes)
    for i, ax in enumerate(axes.ravel()):
        if i >= num_angles:
            ax.axis("off")
            continue
        if num_samples > 1:
            parts = ax.violinplot(
                [prob_samples[i, :, c] for c in classes], positions=classes, widths=0.8
            )
            for body in parts["bodies"]:
                body.set_alpha(0.6)
        else:
            ax.bar(classes, prob_samples[i, 0], color="tab:blue")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(classes)
        ax.set_title(f"{angles[i]:g}\N{DEGREE SIGN}", fontsize=9)
        ax.tick_params(labelsize=7)
        inset = ax.inset_axes([0.02, 0.55, 0.3, 0.42])
        inset.imshow(np.squeeze(images[i]), cmap="gray_r")
        inset.set_xticks([])
        inset.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_entropy(
    entropy_in: dict[str, np.ndarray],
    entropy_out: dict[str, np.ndarray],
    path: str,
    num_classes: int = 10,
    dpi: int = 80,
) -> str:
    """Histogram and empirical CDF of predictive entropy per model, in- vs out-of-distribution.

    Args:
      entropy_in: model name -> entropies on in-distribution inputs.
      entropy_out: model name -> entropies on out-of-distribution inputs (same names).
      path: output PNG path.
      num_classes: sets the x-range [0, log num_classes].
      dpi: resolution of the PNG.

    Returns:
      `path`.
    """
    if set(entropy_in) != set(entropy_out) or not entropy_in:
        raise ValueError("`entropy_in` and `entropy_out` must name the same, non-empty models.")
    max_entropy = math.log(num_classes)
    bins = np.linspace(0.0, max_entropy, 31)
    fig, (ax_hist, ax_cdf) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, name in enumerate(entropy_in):
        color = f"C{k}"
        for values, style, where in ((entropy_in, "-", "in"), (entropy_out, "--", "out")):
            data = np.sort(np.asarray(values[name], dtype=np.float64).ravel())
            label = f"{name} ({where})"
            ax_hist.hist(
                data,
                bins=bins,
                histtype="step",
                color=color,
                linestyle=style,
                label=label,
                density=True,
            )
            ax_cdf.plot(
                data, np.arange(1, data.size + 1) / data.size, style, color=color, label=label
            )
    ax_hist.set_xlabel("predictive entropy (nats)")
    ax_hist.set_ylabel("density (log scale)")
    ax_hist.set_yscale("log")  # confident inputs pile up at 0 and would hide the tails
    ax_cdf.set_xlabel("predictive entropy (nats)")
    ax_cdf.set_ylabel("fraction of inputs below")
    ax_cdf.set_xlim(0.0, max_entropy)
    ax_cdf.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_regression_band(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_grid: np.ndarray,
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str,
    dpi: int = 80,
) -> str:
    """1-D regression: training points, predictive mean and a +-2 std band per model.

    Args:
      x_train: training inputs `[N]` or `[N, 1]`.
      y_train: training targets `[N]`.
      x_grid: inputs the predictions were made at, `[G]` or `[G, 1]`.
      predictions: model name -> (mean `[G]`, std `[G]`).
      path: output PNG path.
      dpi: resolution of the PNG.

    Returns:
      `path`.
    """
    if not predictions:
        raise ValueError("`predictions` must name at least one model.")
    grid = np.asarray(x_grid).ravel()
    fig, axes = plt.subplots(
        1, len(predictions), figsize=(4.5 * len(predictions), 3.4), squeeze=False, sharey=True
    )
    for ax, (name, (mean, std)) in zip(axes[0], predictions.items(), strict=True):
        mean, std = np.asarray(mean).ravel(), np.asarray(std).ravel()
        if mean.shape != grid.shape or std.shape != grid.shape:
            raise ValueError(f"predictions[{name!r}] must be two arrays of {grid.size} values.")
        ax.fill_between(grid, mean - 2 * std, mean + 2 * std, alpha=0.3, label="+-2 std")
        ax.plot(grid, mean, label="mean")
        ax.scatter(np.ravel(x_train), np.ravel(y_train), s=8, color="k", label="data")
        ax.set_title(name)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("y")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)
