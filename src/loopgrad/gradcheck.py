"""Gradient check: backpropagation against central differences of the cost."""
import numpy as np

from .model import MLP


def gradcheck(model, X, Y, eps=1e-6, backend="loops"):
    """Largest relative error over the layers' arrays dW[l], db[l] of ``model.gradients``
    against central differences ``(J(theta + eps e_p) - J(theta - eps e_p)) / 2 eps``.

    The error of an array g against its estimate n is ``||g - n|| / max(||g|| + ||n||, 1e-12)``,
    which stays meaningful where single entries are near zero. Runs in float64: a float32
    model is checked through a float64 copy.
    """
    probe = MLP(model.sizes, hidden=model.hidden, output=model.output, dtype="float64")
    probe.theta[...] = model.theta
    X, Y = probe.validate(X, Y, y_arg="Y")
    _, grads = probe.gradients(X, Y, backend=backend)
    analytic = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    theta = probe.theta
    numeric = np.empty_like(theta)
    for p in range(theta.size):
        keep = theta[p]
        theta[p] = keep + eps
        j_plus = probe.loss(X, Y)
        theta[p] = keep - eps
        j_minus = probe.loss(X, Y)
        theta[p] = keep
        numeric[p] = (j_plus - j_minus) / (2 * eps)
    worst = 0.0
    for n_in, n_out, w_off, b_off, _ in probe.layers:
        for lo, hi in ((w_off, w_off + n_in * n_out), (b_off, b_off + n_out)):
            g, n = analytic[lo:hi], numeric[lo:hi]
            worst = max(worst, np.linalg.norm(g - n) / max(np.linalg.norm(g) + np.linalg.norm(n), 1e-12))
    return float(worst)
