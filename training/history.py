"""The run's `history.csv`, one row per epoch as `keras.callbacks.CSVLogger` appends it.

A resumed run drops the rows of the epochs it trains again (`keep_rows_before`),
the best checkpoint is chosen on the rows before (`best_before`), and the
training curve is drawn from them (`plot_training_curve`).
"""

import csv
import os

from rundir import replacing


def _rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.reader(f))


def keep_rows_before(path, epoch) -> None:
    """Drops the rows of `epoch` (0-based) and later from the history CSV, atomically."""
    rows = _rows(path)
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epoch]
    if len(kept) == len(rows):
        return
    with replacing(path) as partial, open(partial, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def best_before(path, epoch, key="val_accuracy") -> float:
    """The best `key` in the history CSV over the epochs before `epoch`; -1 without any."""
    rows = _rows(path)
    if not rows or key not in rows[0]:
        return -1.0
    column = rows[0].index(key)
    return max((float(row[column]) for row in rows[1:] if row and int(row[0]) < epoch),
               default=-1.0)


def plot_training_curve(history_csv, path) -> None:
    """Training curve PNG (loss and error, train and test) from `history.csv`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style, label in (("loss", "-", "train"), ("val_loss", "-", "test")):
        ax_loss.plot(epochs, [float(r[key]) for r in rows], style, label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        ax_err.plot(epochs, [100 * (1 - float(r[key])) for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_err.set(xlabel="epoch", ylabel="top-1 error (%)", title="error")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
