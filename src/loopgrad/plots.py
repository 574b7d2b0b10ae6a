"""Figures, drawn headless (Agg)."""


def plot_history(history, path, title=None):
    """Training (and validation) loss per epoch, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = range(1, len(history.loss) + 1)
    ax.plot(epochs, history.loss, label="training loss")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss J")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    # written and flushed here, so that a full disk or a device such as /dev/full raises instead of
    # the error being lost when matplotlib's own file is closed
    with open(path, "wb") as f:
        f.write(png.getvalue())
        f.flush()
    return path
