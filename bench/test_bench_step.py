"""Whole training steps: the fused loop step vs the NumPy twin step vs PyTorch; digits epochs vs scikit-learn."""
import numpy as np
import pytest

from loopgrad import datasets
from loopgrad.bench_cli import step_case
from conftest import STEP_CASES, sized, torch_or_skip


@pytest.mark.parametrize("case", sized(STEP_CASES))
@pytest.mark.parametrize("impl", ["loops", "numpy", "torch"])
def test_train_step(benchmark, case, impl, dtype):
    sizes, m = case
    benchmark.group = f"step {'-'.join(map(str, sizes))} batch={m} {dtype.name}"
    if impl == "torch":
        t = torch_or_skip()
        _, _, X, y = step_case(sizes, m, dtype.name)
        net = t.nn.Sequential(*[mod for a, b_ in zip(sizes[:-1], sizes[1:]) for mod in (t.nn.Linear(a, b_), t.nn.ReLU())][:-1])
        net = net.to(getattr(t, dtype.name))
        sgd = t.optim.SGD(net.parameters(), lr=0.01)
        tX, ty = t.from_numpy(X), t.from_numpy(y)
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
    # correctness first: one step of this backend from the same start agrees with the NumPy twin's
    ref_step, ref_model, _, _ = step_case(sizes, m, dtype.name, "numpy")
    step, model, _, _ = step_case(sizes, m, dtype.name, impl)
    ref_step()
    step()
    assert np.abs(model.theta - ref_model.theta).max() < (1e-4 if dtype == np.float32 else 1e-10)
    benchmark(step)


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


@pytest.mark.small
@pytest.mark.parametrize("optimizer", ["sgd", "dpsgd-clip-only", "dpsgd", "dpsgd-secure"])
def test_dp_step(benchmark, optimizer):
    """DP-SGD's step beside the plain one (784-128-64-10, batch 64, float32): clipping through N1/N2,
    then the noise drawn in the compiled step (counter-based), or from os.urandom in the secure mode.
    These groups run one after the other, so their ratio carries the machine's drift between them;
    test_bench_fresh.py's test_fresh_process_dp_ratio alternates the two steps for the ratio itself."""
    from loopgrad.optim import DPSGD, SGD
    benchmark.group = "DP-SGD step 784-128-64-10 batch=64 float32"
    opt = {"sgd": lambda: SGD(0.01), "dpsgd-clip-only": lambda: DPSGD(0.01, noise_multiplier=0.0),
           "dpsgd": lambda: DPSGD(0.01, noise_multiplier=1.0),
           "dpsgd-secure": lambda: DPSGD(0.01, noise_multiplier=1.0, secure=True)}[optimizer]()
    step, model, _, _ = step_case([784, 128, 64, 10], 64, "float32", optimizer=opt)
    before = model.theta.copy()
    step()
    assert np.isfinite(model.theta).all() and not np.array_equal(model.theta, before)
    if optimizer == "dpsgd-secure":
        # a fresh block of CSPRNG noise per step, drawn in Python as fit does
        net_step = step
        step = lambda: (opt.noise(1, model.n_params, np.float32), net_step())  # noqa: E731
    benchmark(step)


@pytest.mark.small
@pytest.mark.parametrize("impl", ["loopgrad", "sklearn"])
def test_lbfgs_fit(benchmark, impl):
    """solver="lbfgs", 100 iterations, on digits (64-64-10, float64): scipy's L-BFGS-B on loopgrad's
    fused loss and gradient against scikit-learn's own; both start from the same initial weights."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from loopgrad.sklearn import MLPClassifier
    d = datasets.load("digits")
    benchmark.group = "lbfgs fit digits 64-64-10, 100 iterations"
    cls = MLPClassifier if impl == "loopgrad" else SkMLPClassifier
    make = lambda: cls((64,), solver="lbfgs", max_iter=100, random_state=0)  # noqa: E731

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make().fit(d.X_train, d.y_train)
    assert run().score(d.X_test, d.y_test) > 0.9
    benchmark.pedantic(run, rounds=3, iterations=1)


def _tfidf_task(rows=20_000, vocab=20_000, words=60, seed=0):
    """A bag-of-words stand-in for a TF-IDF text task (no corpus ships offline): documents of about
    ``words`` distinct terms drawn from a Zipf-like vocabulary, tf-idf weighted and L2-normalised,
    labelled by a sparse linear teacher into 4 classes."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    cols = rng.choice(vocab, size=rows * words, p=p)
    X = sp.csr_matrix((np.ones(rows * words), cols, np.arange(0, rows * words + 1, words)), shape=(rows, vocab))
    X.sum_duplicates()
    df = np.bincount(X.indices, minlength=vocab)
    X.data = X.data * np.log((1 + rows) / (1 + df[X.indices]))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1 / np.maximum(norms, 1e-12)) @ X
    y = np.asarray(X @ rng.standard_normal((vocab, 4))).argmax(axis=1)
    return X.tocsr(), y


@pytest.mark.small
@pytest.mark.parametrize("impl", ["loopgrad", "sklearn"])
def test_sparse_epoch(benchmark, impl):
    """One epoch of MLPClassifier((64,), batch 200) on a 20,000 x 20,000 CSR tf-idf matrix (60 terms a
    document): loopgrad's sparse F1/B2 loops against scikit-learn's sparse products, both float64."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    from loopgrad.sklearn import MLPClassifier
    X, y = _tfidf_task()
    benchmark.group = "sparse epoch tf-idf 20000x20000 -> 64 -> 4"
    cls = MLPClassifier if impl == "loopgrad" else SkMLPClassifier

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cls((64,), max_iter=1, random_state=0).fit(X, y)
    assert run().score(X, y) > 0.3
    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.small
@pytest.mark.user_thread
@pytest.mark.parametrize("batch", [32, 128, 1024])
@pytest.mark.parametrize("company", ["alone", "after-numpy-product", "after-numpy-product-not-giving-way"])
def test_fit_epoch_in_company(benchmark, company, batch, monkeypatch):
    """A ``fit`` epoch of 20 steps (784-128-64-10, float32, SGD, no shuffle), called from pytest's thread as
    a user's code calls it, right after a NumPy product of 256 x 784 x 256 on that thread (untimed, in
    pedantic's setup) or with none. OpenBLAS's workers spin for about 0.1 s after the product and take
    a core; each chunk of ``fit``'s steps runs on the threads left free (``loopgrad._company``);
    "not-giving-way" turns that off. Measured, a product made on the compute thread itself (where the
    other benchmarks' bodies run) hurt the steps far less, hence ``user_thread``. The time includes
    ``fit``'s own checks of its arguments, alike in the three cases."""
    import loopgrad as lg
    from loopgrad import _company
    from loopgrad.bench_cli import settle

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20 * batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    A = rng.standard_normal((256, 784)).astype(np.float32)
    W = rng.standard_normal((784, 256)).astype(np.float32)
    product = np.empty((256, 256), np.float32)
    model = lg.MLP([784, 128, 64, 10], dtype="float32")
    benchmark.group = f"fit epoch 784-128-64-10 batch={batch} float32 in company of NumPy's BLAS"
    if company.endswith("not-giving-way"):
        monkeypatch.setattr(_company, "ENABLED", False)

    def epoch():
        return model.fit(X, y, epochs=1, batch_size=batch, optimizer=lg.SGD(0.01), shuffle=False, progress=False)

    def setup():
        if company != "alone":
            np.matmul(A, W, out=product)

    assert np.isfinite(epoch().loss[-1])
    settle()
    benchmark.pedantic(epoch, setup=setup, rounds=30, warmup_rounds=2)
