"""Figures, drawn headless (Agg). matplotlib is the optional extra ``plot``, imported only here."""


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend, or an ImportError that says how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'loopgrad[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_history(history, path=None, title=None):
    """Loss per epoch (training, and validation when there is some) and, beside it, validation
    accuracy or R^2; the best epoch (the one early stopping restores) is marked on both panels.
    Writes a PNG to ``path`` when given and returns the figure."""
    plt = _pyplot()
    score = history.val_accuracy or history.val_r2
    fig, axes = plt.subplots(1, 2 if score else 1, figsize=(10 if score else 6, 4), dpi=100, squeeze=False)
    ax = axes[0, 0]
    epochs = range(1, len(history.loss) + 1)
    ax.plot(epochs, history.loss, label="training loss")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss J")
    if history.loss and min(history.loss + history.val_loss) > 0:
        ax.set_yscale("log")
    if score:
        right = axes[0, 1]
        accuracy = bool(history.val_accuracy)
        right.plot(epochs, [100 * v for v in score] if accuracy else score, color="C1")
        right.set_xlabel("epoch")
        right.set_ylabel("validation accuracy (%)" if accuracy else "validation R^2")
    for a in axes[0]:
        if history.best_epoch >= 0:
            restored = "restored " if history.stopped_early else ""
            a.axvline(history.best_epoch + 1, color="grey", linestyle="--", label=f"{restored}best epoch")
        a.grid(alpha=0.3)
    ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        import io

        png = io.BytesIO()
        fig.savefig(png, format="png")
        # written and flushed here, so that a full disk or a device such as /dev/full raises instead of
        # the error being lost when matplotlib's own file is closed
        with open(path, "wb") as f:
            f.write(png.getvalue())
            f.flush()
        plt.close(fig)
    return fig
