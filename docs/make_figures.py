"""Draws the tutorial's figures into docs/img/ (run: python docs/make_figures.py)."""
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import loopgrad as lg  # noqa: E402
from loopgrad import datasets  # noqa: E402
from loopgrad.plots import plot_history  # noqa: E402


def main(out=pathlib.Path(__file__).parent / "img"):
    out.mkdir(exist_ok=True)
    d = datasets.load("digits", dtype="float32")
    model = datasets.model_for(d, hidden=(64,))
    history = model.fit(d.X_train, d.y_train, epochs=30, optimizer=lg.Adam(2e-3, weight_decay=1e-3),
                        validation_split=0.1, progress=False)
    plot_history(history, out / "loss_curve.png", title="digits 64-64-10")
    fresh = datasets.model_for(d, hidden=(64,))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for m, label in ((fresh, "at initialisation"), (model, "after training")):
        ax.hist(m.per_example_grad_norms(d.X_train, d.y_train), bins=50, alpha=0.6, label=label, log=True)
    ax.set_xlabel("per-example gradient norm (N1)")
    ax.set_ylabel("examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "per_example_norms.png")
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
