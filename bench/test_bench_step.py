"""Whole training steps: the fused loop step vs the NumPy twin step vs PyTorch; digits epochs vs scikit-learn."""
import numpy as np
import pytest

import loopgrad as lg
from loopgrad import datasets, layout
from loopgrad.kernels import network as loop_network
from loopgrad.reference import network as numpy_network
from loopgrad.tables import LOSS_CODE
from conftest import STEP_CASES, sized, torch_or_skip


def _step_buffers(model, m, rng):
    X = rng.standard_normal((m, model.sizes[0])).astype(model.dtype)
    Y = model._targets(rng.integers(0, model.sizes[-1], m), m)
    opt = lg.SGD(0.01)
    return X, Y, opt


@pytest.mark.parametrize("case", sized(STEP_CASES))
@pytest.mark.parametrize("impl", ["loops", "numpy", "torch"])
def test_train_step(benchmark, case, impl, dtype, rng):
    sizes, m = case
    model = lg.MLP(sizes, dtype=dtype.name)
    X, Y, opt = _step_buffers(model, m, rng)
    benchmark.group = f"step {'-'.join(map(str, sizes))} batch={m} {dtype.name}"
    if impl == "torch":
        t = torch_or_skip()
        net = t.nn.Sequential(*[mod for a, b_ in zip(sizes[:-1], sizes[1:]) for mod in (t.nn.Linear(a, b_), t.nn.ReLU())][:-1])
        net = net.to(getattr(t, dtype.name))
        sgd = t.optim.SGD(net.parameters(), lr=0.01)
        tX, ty = t.from_numpy(X), t.from_numpy(Y.argmax(axis=1))
        loss_fn = t.nn.CrossEntropyLoss()

        def run():
            sgd.zero_grad()
            loss = loss_fn(net(tX), ty)
            loss.backward()
            sgd.step()
            return loss
        assert np.isfinite(float(run()))
        benchmark(run)
        return
    network = loop_network if impl == "loops" else numpy_network
    theta = model.theta.copy()
    grad, state = np.empty_like(theta), np.zeros((2, theta.size), dtype)
    work = np.empty(layout.work_size(model.layers, m), dtype)
    decay = layout.decay_mask(model.layers, dtype)
    noise = opt.noise(0, dtype)
    args = (grad, model.layers, X, Y, LOSS_CODE["cross_entropy"], work, opt.code, state, opt.hyper(1), decay, noise)
    # correctness first: one step of each backend from the same start agrees with the NumPy twin
    ref = model.theta.copy()
    numpy_network.train_step_into(ref, np.empty_like(ref), *args[1:5], work.copy(), opt.code, np.zeros_like(state),
                                  opt.hyper(1), decay, noise)
    check = model.theta.copy()
    network.train_step_into(check, *args)
    assert np.abs(check - ref).max() < (1e-4 if dtype == np.float32 else 1e-10)
    benchmark(lambda: network.train_step_into(theta, *args))


@pytest.mark.small
@pytest.mark.parametrize("impl", ["loopgrad", "sklearn"])
def test_digits_epoch(benchmark, impl):
    """One epoch of 64-64-10 ReLU/softmax, batch 32, Adam, on digits' 1437 training rows."""
    from sklearn.neural_network import MLPClassifier
    import warnings
    from sklearn.exceptions import ConvergenceWarning

    d = datasets.load("digits", dtype="float32" if impl == "loopgrad" else "float64")
    benchmark.group = "epoch digits 64-64-10 batch 32"
    if impl == "loopgrad":
        model = datasets.model_for(d, hidden=(64,), dtype="float32")
        model.warmup(32)
        run = lambda: model.fit(d.X_train, d.y_train, epochs=1, batch_size=32, progress=False)  # noqa: E731
    else:
        clf = MLPClassifier((64,), batch_size=32, max_iter=1, random_state=0)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return clf.fit(d.X_train, d.y_train)
    run()
    benchmark(run)
