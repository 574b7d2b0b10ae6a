import numpy as np
import pytest

import loopgrad as lg
from loopgrad import datasets, layout
from loopgrad.kernels import network as loop_network
from loopgrad.reference import network as numpy_network


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", dtype="float64")


@pytest.mark.parametrize("opt", [lg.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                 lg.Adam(1e-2, weight_decay=1e-3), lg.SGD(0.1)], ids=repr)
def test_fused_step_backends_agree_after_100_steps(opt, rng):
    model = lg.MLP([10, 16, 12, 4], hidden="tanh", output="softmax")
    X, y = rng.standard_normal((32, 10)), rng.integers(0, 4, 32)
    runs = []
    for network in (loop_network, numpy_network):
        probe = model.copy()
        net, buf, update = probe.training_buffers(32, opt)
        m = layout.load_batch(buf, *probe.validate(X, y))
        for t in range(1, 101):
            network.train_step_into(net, buf, m, update, t, opt.noise(1, probe.n_params, np.float64)[0])
        runs.append(probe.theta)
    assert np.abs(runs[0] - runs[1]).max() < 1e-9
    assert np.abs(runs[0] - model.theta).max() > 1e-3  # it did train


@pytest.mark.parametrize("m", [1, 40, 300])
@pytest.mark.parametrize("opt", [lg.SGD(0.05, momentum=0.9, weight_decay=1e-3), lg.Adam(1e-2),
                                 lg.DPSGD(0.05, noise_multiplier=1.0)], ids=repr)
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_step_equals_the_layer_by_layer_step(m, opt, weighted, rng):
    """The fused step (one pass over blocks of rows through every layer and back, then B2 and B3 with
    each block's update) computes the same numbers as forward_into, gradients_into, the noise and the
    update over the whole block, in turn: bit for bit, at sizes where both run their parallel loops."""
    from loopgrad.kernels import noise as loop_noise, optim as loop_optim
    from loopgrad.tables import H_CLIP

    model = lg.MLP([200, 96, 48, 10], hidden="relu", output="softmax", dtype="float32", seed=2)
    X, y = rng.standard_normal((m, 200)).astype(np.float32), rng.integers(0, 10, m)
    w = rng.uniform(0.0, 2.0, m).astype(np.float32) if weighted else None
    runs = []
    for fused in (True, False):
        probe = model.copy()
        net, buf, update = probe.training_buffers(m, opt, weighted=weighted)
        layout.load_batch(buf, *probe.validate(X, y), weights=w)
        noise = opt.noise(1, probe.n_params, np.float64)[0]
        losses = []
        for t in range(1, 4):
            if fused:
                losses.append(loop_network.train_step_into(net, buf, m, update, t, noise))
                continue
            loop_network.forward_into(net, buf, m)
            losses.append(loop_network.gradients_into(net, buf, m, update.hyper[H_CLIP]))
            if update.hyper[H_CLIP] > 0.0:
                loop_noise._dp_noise_into(net.grad, noise, update.hyper, t, m)
            loop_optim._optimizer_update_into(update.code, net.theta, net.grad, update.state, net.decay,
                                              update.hyper, t)
        runs.append((probe.theta.copy(), losses))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], model.theta)


# 4 and 2 chunks of k in layer 1; (600, 1024, 256, 10): layer 2's A_prev has rows of 4 KB, so its B2 reads a
# padded copy in a region of its own, while layer 3's runs in layer 1's tasks
@pytest.mark.parametrize("sizes", [(600, 64, 10), (300, 64), (600, 1024, 256, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_step_that_splits_layer_one_by_chunks_of_k_equals_the_layer_by_layer_step(sizes, weighted, rng):
    """At a small batch with a wide first layer the fused step gives each chunk of layer 1's sum over k to a
    task of its own (F1 into partials, B2 and the update of those rows of W, then a range of rows of each
    later layer's dW that joins them): the bits of forward_into, gradients_into and the update in turn, on
    one thread and on two."""
    import numba
    from loopgrad.kernels import optim as loop_optim

    m = 40
    model = lg.MLP(list(sizes), hidden="relu", output="softmax", dtype="float32", seed=4)
    X, y = rng.standard_normal((m, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], m)
    w = rng.uniform(0.0, 2.0, m).astype(np.float32) if weighted else None
    opt = lg.SGD(0.05, momentum=0.9)
    runs = []
    for fused, threads in ((True, 2), (True, 1), (False, 2)):
        probe = model.copy()
        net, buf, update = probe.training_buffers(m, opt, weighted=weighted)
        layout.load_batch(buf, *probe.validate(X, y), weights=w)
        numba.set_num_threads(threads)
        try:
            for t in range(1, 4):
                if fused:
                    loop_network.train_step_into(net, buf, m, update, t, np.zeros(0, np.float32))
                    continue
                loop_network.forward_into(net, buf, m)
                loop_network.gradients_into(net, buf, m, 0.0)
                loop_optim._optimizer_update_into(update.code, net.theta, net.grad, update.state, net.decay,
                                                  update.hyper, t)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert fused == bool(np.any(layout.partials(buf)))  # the split ran (and only in the fused step)
        joined = [loop_network._joins_first_layer(net, buf, m, l) for l in range(1, len(sizes) - 1)]
        assert joined == [sizes[l] * 4 % 4096 != 0 or sizes[l + 1] < 256 for l in range(1, len(sizes) - 1)]
        runs.append(probe.theta.copy())
    np.testing.assert_array_equal(runs[0], runs[2])
    np.testing.assert_array_equal(runs[1], runs[2])
    assert not np.array_equal(runs[0], model.theta)


@pytest.mark.parametrize("m", [8, 40, 200])  # row pass on one thread, in parallel blocks; layer by layer
@pytest.mark.parametrize("n_in", [200, 600])  # 600: layer 1 split by chunks of k at m = 40, each copying its columns
def test_epoch_equals_its_steps_on_loaded_batches(m, n_in, rng):
    """The compiled epoch, whose step copies each batch's examples into A[0] in the tasks that read them
    first, gives the same bits as loading every batch (``layout.load_batch``) and calling
    ``train_step_into``: parameters and summed loss, over batches in a shuffled order with a short last one."""
    model = lg.MLP([n_in, 96, 48, 10], hidden="relu", output="softmax", dtype="float32", seed=3)
    n = 3 * m + 5
    X, y = rng.standard_normal((n, n_in)).astype(np.float32), rng.integers(0, 10, n)
    X, Y = model.validate(X, y)
    order = rng.permutation(n)
    opt = lg.SGD(0.05, momentum=0.9)
    runs = []
    for by_steps in (False, True):
        probe = model.copy()
        opt.start(n, m)
        net, buf, update = probe.training_buffers(m, opt)
        noise = opt.noise(1, probe.n_params, np.float32)
        if by_steps:
            total = 0.0
            for k, s in enumerate(range(0, n, m)):
                rows = order[s:s + m]
                layout.load_batch(buf, X[rows], Y[rows])
                total += float(loop_network.train_step_into(net, buf, rows.size, update, k + 1, noise[0])) * rows.size
        else:
            total, _ = loop_network.train_epoch_into(net, buf, X, Y, np.zeros(0, np.float32), order, m, update, 0,
                                                     noise, np.zeros(1, np.int64))
        runs.append((probe.theta.copy(), total))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], model.theta)


def test_fit_backends_agree_float64(digits):
    thetas = []
    for backend in ("loops", "numpy"):
        m = datasets.model_for(digits, hidden=(32,), dtype="float64")
        m.fit(digits.X_train, digits.y_train, epochs=2, progress=False, backend=backend)
        thetas.append(m.theta)
    assert np.abs(thetas[0] - thetas[1]).max() < 1e-9


def test_params_are_views_into_one_block():
    m = lg.MLP([3, 4, 2])
    assert m.theta.flags.c_contiguous
    for W, b in m.params:
        assert np.shares_memory(W, m.theta) and np.shares_memory(b, m.theta)
    m.params[1][0][0, 0] = 42.0
    assert 42.0 in m.theta
    assert [W.shape for W, _ in m.params] == [(3, 4), (4, 2)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_views_are_the_slices_of_the_layout(dtype):
    # compiled code builds layout's views directly (``_numba.flat_view``), with no check of its own:
    # each must be the NumPy slice of the same block (whose reshape would raise if it ran past the end)
    from loopgrad import _numba  # noqa: F401  (compiles layout's views)

    model = lg.MLP([784, 100, 10, 3], dtype=dtype)
    opt = lg.SGD(0.1)
    opt.start(1000, 40)
    net, buf, _ = model.training_buffers(40, opt)
    L = net.layers.shape[0]

    def same(compiled, plain):
        assert compiled.dtype == plain.dtype and compiled.shape == plain.shape and compiled.strides == plain.strides
        assert compiled.ctypes.data == plain.ctypes.data and compiled.flags.c_contiguous

    for m in (1, 17, 40):
        for l in range(L + 1):
            for name in ("z", "a", "dz") if l > 0 else ("a",):
                fn = getattr(layout, name)
                same(fn(buf, l, m), fn.py_func(buf, l, m))
        same(layout.targets(buf, m), layout.targets.py_func(buf, m))
    for l in range(2, L + 1):
        same(layout.wt(buf, l), layout.wt.py_func(buf, l))
    same(layout.partials(buf), layout.partials.py_func(buf))
    # the room for dZ's panels: where B2 reads them (784 and 100 inputs in batches of 600), none elsewhere
    _, big, _ = model.training_buffers(600, opt)
    assert list(big.slots[:, layout.PANEL_OFF] >= 0) == [False, True, False, False]
    assert list(big.slots[:, layout.W_PANEL_OFF] >= 0) == [False, True, False, False]
    assert (buf.slots[:, [layout.PANEL_OFF, layout.W_PANEL_OFF]] < 0).all()
    for w in (8, 16, 32):
        for l in range(1, L + 1):
            for m in (1, 513, 600):
                compiled, plain = layout.dz_panels(big, l, m, w), layout.dz_panels.py_func(big, l, m, w)
                if plain.size:
                    same(compiled, plain)
                else:  # no room: empty either way (the strides of an empty array differ and mean nothing)
                    assert compiled.shape == plain.shape == (0, 0, w)
            assert layout.dz_panels(big, l, 600, w).shape[0] == (-(-big.slots[l, layout.WIDTH] // w) if l == 1 else 0)
            compiled, plain = layout.w_panels(big, l, w), layout.w_panels.py_func(big, l, w)
            if plain.size:
                same(compiled, plain)
                assert plain.shape == (-(-100 // w), 784, w)
            else:
                assert compiled.shape == plain.shape == (0, 0, w) and l > 1
    for l in range(L):
        for compiled, plain in zip(layout.params(net.theta, net.layers, l), layout.params.py_func(net.theta, net.layers, l)):
            same(compiled, plain)
    from loopgrad._numba import rows_flat
    Z = layout.z(buf, 1, 40)
    same(rows_flat(Z, 3, 9), Z[3:9].reshape(-1))


def test_weight_decay_does_not_touch_biases(rng):
    m = lg.MLP([3, 2], output="identity")
    m.params[0][1][...] = 1.0
    X = np.zeros((4, 3))  # zero inputs: the data gradient of W is 0, of b is (b - y) = 0 with y = b
    before = m.theta.copy()
    m.fit(X, np.ones((4, 2)), epochs=3, optimizer=lg.SGD(0.1, weight_decay=0.5), progress=False)
    np.testing.assert_array_equal(m.params[0][1], 1.0)
    np.testing.assert_allclose(m.params[0][0], before[:6].reshape(3, 2) * 0.95 ** 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_bits(dtype, digits):
    runs = []
    for _ in range(2):
        m = datasets.model_for(digits, hidden=(32,), dtype=dtype, seed=3)
        h = m.fit(digits.X_train, digits.y_train, epochs=3, seed=7, validation_split=0.1, progress=False)
        runs.append((m.theta.copy(), h.loss))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    m = datasets.model_for(digits, hidden=(32,), dtype=dtype, seed=3)
    m.fit(digits.X_train, digits.y_train, epochs=3, seed=8, validation_split=0.1, progress=False)
    assert not np.array_equal(m.theta, runs[0][0])


@pytest.mark.parametrize("batch_size", [32, 100, 300, 1437])  # axpy, dot and chunked dot paths of F1 and B2
def test_same_bits_on_one_and_two_threads(digits, batch_size):
    import numba
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            m = datasets.model_for(digits, hidden=(256, 48), dtype="float32")
            m.fit(digits.X_train, digits.y_train, epochs=2, batch_size=batch_size, progress=False)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        runs.append(m.theta)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_fit_learns_digits_with_history(digits):
    m = datasets.model_for(digits, hidden=(64,), dtype="float32")
    h = m.fit(digits.X_train, digits.y_train, epochs=15, optimizer=lg.Adam(2e-3, weight_decay=1e-3),
              validation_data=(digits.X_test, digits.y_test), progress=False)
    assert h.epochs == 15 and len(h.loss) == len(h.val_loss) == len(h.val_accuracy) == 15
    assert h.loss[-1] < h.loss[0] / 5
    assert m.score(digits.X_test, digits.y_test) >= 0.95
    assert h.val_accuracy[-1] == pytest.approx(m.score(digits.X_test, digits.y_test))
    proba = m.predict_proba(digits.X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(m.predict(digits.X_test), proba.argmax(axis=1))


def test_regression_reports_r2():
    d = datasets.load("diabetes")
    m = datasets.model_for(d, hidden=(16,), dtype="float64")
    h = m.fit(d.X_train, d.y_train, epochs=30, optimizer=lg.Adam(1e-2), validation_split=0.2, progress=False)
    assert len(h.val_r2) == 30 and not h.val_accuracy
    assert m.score(d.X_test, d.y_test) > 0.15  # the mean predicts 0; a linear model reaches about 0.4 here
    assert m.predict(d.X_test).shape == (d.X_test.shape[0],)
    with pytest.raises(ValueError, match="predict_proba"):
        m.predict_proba(d.X_test)


def test_binary_sigmoid_output():
    d = datasets.load("breast_cancer")
    m = datasets.model_for(d, hidden=(16,))
    assert m.output == "sigmoid" and m.sizes[-1] == 1
    m.fit(d.X_train, d.y_train, epochs=20, progress=False)
    assert m.score(d.X_test, d.y_test) > 0.93
    assert m.predict_proba(d.X_test).shape == (d.X_test.shape[0], 2)


def test_early_stopping_restores_best():
    from loopgrad.model import _evaluate
    d = datasets.load("iris")
    m = datasets.model_for(d, hidden=(8,), dtype="float64")
    h = m.fit(d.X_train, d.y_train, epochs=500, optimizer=lg.Adam(0.05), validation_data=(d.X_test, d.y_test),
              early_stopping=True, patience=3, progress=False)
    assert h.stopped_early and h.epochs < 500
    assert h.best_epoch == int(np.argmin(h.val_loss)) < h.epochs - 1
    restored, _ = _evaluate(m, *m.validate(d.X_test, d.y_test))
    assert restored == pytest.approx(min(h.val_loss), rel=1e-12)


def test_zero_epochs_is_a_no_op():
    m = lg.MLP([2, 2])
    before = m.theta.copy()
    h = m.fit(np.ones((3, 2)), [0, 1, 0], epochs=0, progress=False)
    assert h.epochs == 0 and h.loss == []
    np.testing.assert_array_equal(m.theta, before)


@pytest.mark.parametrize("name", datasets.NAMES)
def test_datasets(name):
    d = datasets.load(name)
    assert d.X_train.shape[1] == d.X_test.shape[1] == d.n_features
    assert abs(d.X_train.mean()) < 1e-6
    assert len(d.X_train) > len(d.X_test) > 0
    again = datasets.load(name)
    np.testing.assert_array_equal(d.X_train, again.X_train)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset: expected one of digits"):
        datasets.load("mnist")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype, rng):
    m = lg.MLP([5, 7, 3], hidden="gelu", output="softmax", dtype=dtype, seed=4)
    m.fit(rng.standard_normal((20, 5)), rng.integers(0, 3, 20), epochs=2, progress=False)
    path = tmp_path / "m.npz"
    m.save(path)
    back = lg.MLP.load(path)
    assert (back.sizes, back.hidden, back.output, back.dtype) == (m.sizes, m.hidden, m.output, m.dtype)
    X = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(back.forward(X), m.forward(X))
    assert all(np.shares_memory(W, back.theta) for W, _ in back.params)


def _write(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make,words", [
    (lambda p, good: _write(p, good.read_bytes()[:200]), "not a loopgrad model file"),
    (lambda p, good: _write(p, b"garbage" * 50), "not a loopgrad model file"),
    (lambda p, good: _write(p, __import__("pickle").dumps({"theta": [1, 2]})), "not a loopgrad model file"),
    (lambda p, good: np.save(p.with_suffix(".npy"), np.arange(3)) or p.with_suffix(".npy"), "not a loopgrad model"),
    (lambda p, good: np.savez(p, format_version=1, sizes=[5, 3], hidden="relu", output="softmax",
                              dtype="float64", theta=np.zeros(7)) or p, "do not match the architecture"),
    (lambda p, good: np.savez(p, format_version=9, sizes=[5, 3], hidden="relu", output="softmax",
                              dtype="float64", theta=np.zeros(18)) or p, "format version 9"),
    (lambda p, good: np.savez(p, format_version=1, sizes=[5, 3], hidden="relu", output="softmax",
                              dtype="float64", theta=np.array([object()], dtype=object)) or p, "not a loopgrad"),
])
def test_load_rejects_bad_files(tmp_path, make, words):
    good = tmp_path / "good.npz"
    lg.MLP([5, 3]).save(good)
    bad = make(tmp_path / "bad.npz", good)
    with pytest.raises(ValueError, match=words) as e:
        lg.MLP.load(bad)
    assert str(bad) in str(e.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        lg.MLP.load(tmp_path / "nope.npz")


def test_dpsgd_without_noise_and_with_a_large_clip_is_sgd(rng):
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    a, b = lg.MLP([6, 8, 3], seed=1), lg.MLP([6, 8, 3], seed=1)
    a.fit(X, y, epochs=3, batch_size=8, optimizer=lg.SGD(0.1), progress=False)
    b.fit(X, y, epochs=3, batch_size=8, optimizer=lg.DPSGD(0.1, clip_norm=1e6, noise_multiplier=0.0), progress=False)
    np.testing.assert_allclose(a.theta, b.theta, atol=1e-13)


@pytest.mark.parametrize("backend", ["loops", "numpy"])
def test_dpsgd_clipped_norms_are_bounded(backend, rng):
    m = lg.MLP([6, 8, 3], seed=2)
    X, y = 10 * rng.standard_normal((16, 6)), rng.integers(0, 3, 16)
    clip = 1.0
    raw = m.per_example_grad_norms(X, y)
    assert (raw > clip).sum() >= 8 and (raw < clip).sum() >= 1
    network = loop_network if backend == "loops" else numpy_network
    net, buf, _ = m.training_buffers(16)
    layout.load_batch(buf, *m.validate(X, y))
    network.forward_into(net, buf, 16)
    network.gradients_into(net, buf, 16, clip)
    views = layout.layer_views(buf, 16)
    from loopgrad.kernels import per_example_sq_norms
    clipped = np.sqrt(sum(per_example_sq_norms(views[l - 1][1], views[l][2]) for l in range(1, len(views))))
    assert (clipped <= clip * (1 + 1e-12)).all()
    np.testing.assert_allclose(clipped, np.minimum(raw, clip), rtol=1e-12)  # clipped onto the ball, others kept


def test_dpsgd_learns_digits(digits):
    m = datasets.model_for(digits, hidden=(64,), dtype="float32")
    m.fit(digits.X_train, digits.y_train, epochs=15, batch_size=64, progress=False,
          optimizer=lg.DPSGD(lr=0.5, clip_norm=1.0, noise_multiplier=0.5, seed=0))
    assert m.score(digits.X_test, digits.y_test) > 0.85


def test_divergence_is_reported_and_the_model_restored(rng):
    m = lg.MLP([3, 8, 1], output="identity")
    before = m.theta.copy()
    X, y = rng.standard_normal((64, 3)), 100 * rng.standard_normal(64)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="diverged at epoch"):
        m.fit(X, y, epochs=20, optimizer=lg.SGD(lr=1e3), progress=False)
    np.testing.assert_array_equal(m.theta, before)


def _drive(choice, seconds_per_step, chunks):
    """Run ``chunks`` chunks of a long epoch through ``choice`` with the given seconds per step for
    each thread count; returns the thread counts it ran on."""
    ran = []
    for _ in range(chunks):
        threads, steps = choice.plan(10**6)
        assert 1 <= steps <= 10**6
        choice.record(threads, steps, steps * seconds_per_step(threads, len(ran)))
        ran.append(threads)
    return ran


def test_thread_choice_runs_the_faster_setting_and_tries_the_other_now_and_then():
    from loopgrad import _threads

    # two threads twice as fast: after one short try of one thread, almost every chunk runs on two,
    # and the tries thin out as two keep winning by more than the margin
    ran = _drive(_threads.ThreadChoice(2), lambda k, i: 1e-3 / k, 200)
    assert ran[0] == 2 and 1 in ran[:4]
    assert ran[50:].count(1) <= 3
    # the second thread does not come (a two-thread step 18x slower, as measured on the shared VM):
    # one thread from the first tries on
    ran = _drive(_threads.ThreadChoice(2), lambda k, i: 4.7e-4 if k == 1 else 8.5e-3, 100)
    assert ran[10:].count(2) <= 4
    # a phase change: two threads win, then stop coming after chunk 60; the choice follows within
    # the try interval
    ran = _drive(_threads.ThreadChoice(2), lambda k, i: (1e-3 / k) if i < 60 or k == 1 else 2e-2, 200)
    assert ran[40:60].count(2) >= 18
    assert ran[60 + _threads.MAX_INTERVAL + 2:].count(2) <= 3
    # the first timed chunk on two threads is slow (a transient after the warm-up), later ones twice as fast
    # as one thread: two threads from then on, not one thread for the rest of the fit
    ran = _drive(_threads.ThreadChoice(2), lambda k, i: 2e-2 if k == 2 and i == 1 else 1e-3 / k, 60)
    assert ran[5:].count(2) >= 50
    # one thread: nothing to choose, the whole epoch in one call
    assert _threads.ThreadChoice(1).plan(500) == (1, 500)


def test_fit_counts_the_steps_run_on_each_thread_count(digits):
    from loopgrad import _aot

    m = datasets.model_for(digits, hidden=(512,), dtype="float32")
    assert m.n_params > _aot.MAX_PARAMS  # served by the numba kernels, where the thread count is chosen
    h = m.fit(digits.X_train, digits.y_train, epochs=2, batch_size=32, progress=False)
    assert sum(h.thread_steps.values()) == 2 * -(-len(digits.X_train) // 32)
    assert set(h.thread_steps) <= {1, numba_threads()}


def test_fit_and_predict_run_on_the_threads_left_free_with_the_same_bits(monkeypatch, digits):
    """Other threads of the process hold every core (``_company``): each chunk of steps and each forward
    pass runs on one thread, and gives the bits it gives on all of them."""
    from loopgrad import _company

    if not _company.ENABLED:
        pytest.skip("Linux with the JIT on only")

    def train():
        m = datasets.model_for(digits, hidden=(512,), dtype="float32")
        h = m.fit(digits.X_train, digits.y_train, epochs=1, batch_size=32, progress=False, shuffle=False)
        return m, h

    free, _ = train()
    free_proba = free.predict_proba(digits.X_test)
    monkeypatch.setattr(_company, "running_others", lambda: 64)
    crowded, h = train()
    assert set(h.thread_steps) == {1}
    np.testing.assert_array_equal(crowded.theta, free.theta)
    given = []
    real = _company.free_threads
    monkeypatch.setattr(_company, "free_threads", lambda wanted: given.append(real(wanted)) or given[-1])
    np.testing.assert_array_equal(crowded.predict_proba(digits.X_test), free_proba)
    assert given and set(given) == {1}


def numba_threads():
    import numba
    return numba.get_num_threads()
