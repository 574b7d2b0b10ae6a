import numpy as np
import pytest

import loopgrad as lg

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("loopgrad.distributed")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((103, 7))
    y = rng.integers(0, 4, 103)
    return X, y


@pytest.mark.parametrize("chunks", [103, 10, (50, 3, 40, 10), 1], ids=["one", "many", "uneven", "rows"])
def test_gradients_equal_single_process(data, chunks):
    X, y = data
    model = lg.MLP([7, 9, 4], hidden="tanh", output="softmax", seed=1)
    J, grads = model.gradients(X, y)
    c = chunks if isinstance(chunks, tuple) else chunks
    Jd, gd = distributed.gradients(model, da.from_array(X, chunks=(c, 7)), da.from_array(y, chunks=c))
    assert abs(J - Jd) < 1e-10
    for (a, b), (c_, d) in zip(grads, gd):
        assert np.abs(a - c_).max() < 1e-10 and np.abs(b - d).max() < 1e-10


def test_training_equals_full_batch_descent(data):
    X, y = data
    single, dist = lg.MLP([7, 9, 4], seed=2), lg.MLP([7, 9, 4], seed=2)
    single.fit(X, y, epochs=5, batch_size=len(X), shuffle=False, optimizer=lg.SGD(0.1, momentum=0.9),
               progress=False)
    h = distributed.fit_distributed(dist, da.from_array(X, chunks=(30, 7)), da.from_array(y, chunks=30),
                                    epochs=5, optimizer=lg.SGD(0.1, momentum=0.9))
    assert len(h.loss) == 5 and h.loss[-1] < h.loss[0]
    assert np.abs(single.theta - dist.theta).max() < 1e-10


def test_with_a_local_cluster(data):
    from distributed import Client, LocalCluster
    X, y = data
    model = lg.MLP([7, 9, 4], seed=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        J, grads = distributed.gradients(model, da.from_array(X, chunks=(25, 7)), da.from_array(y, chunks=25),
                                         client=client)
        ref_J, ref = model.gradients(X, y)
        assert abs(J - ref_J) < 1e-10
        assert max(np.abs(a - b).max() for p, q in zip(grads, ref) for a, b in zip(p, q)) < 1e-10
        other = lg.MLP([7, 9, 4], seed=3)
        distributed.fit_distributed(model, da.from_array(X, chunks=(25, 7)), da.from_array(y, chunks=25), 3,
                                    lg.Adam(1e-2), client=client)
        distributed.fit_distributed(other, da.from_array(X, chunks=(25, 7)), da.from_array(y, chunks=25), 3,
                                    lg.Adam(1e-2))
        assert np.abs(model.theta - other.theta).max() < 1e-12


def test_rejects_numpy_input(data):
    X, y = data
    with pytest.raises(TypeError, match="dask.array"):
        distributed.gradients(lg.MLP([7, 4]), X, y)


def test_empty_chunks_add_nothing_and_unknown_chunk_sizes_are_named(data):
    X, y = data
    model = lg.MLP([7, 9, 4], seed=1)
    J, grads = model.gradients(X, y)
    dX = da.concatenate([da.from_array(X[:50], chunks=(50, 7)), da.zeros((0, 7), chunks=(0, 7)),
                         da.from_array(X[50:], chunks=(53, 7))])
    Jd, gd = distributed.gradients(model, dX, da.from_array(y, chunks=((50, 0, 53),)))
    assert abs(J - Jd) < 1e-10 and np.abs(grads[0][0] - gd[0][0]).max() < 1e-10
    dX = da.from_array(X, chunks=(30, 7))
    keep = dX[dX[:, 0] > -10]  # boolean indexing: row chunk sizes become unknown
    with pytest.raises(ValueError, match=r"X: the sizes of its row chunks are unknown.*compute_chunk_sizes"):
        distributed.gradients(model, keep, da.from_array(y, chunks=30))


# ---- local SGD with model averaging ----------------------------------------------------------------

def test_one_round_is_the_row_weighted_mean_of_the_chunks_steps():
    """Two chunks (30 and 10 rows), one local full-batch SGD step each on a linear model, averaged
    with weights 30 and 10: computed here by hand from the squared-error gradient."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 1))
    model = lg.MLP([2, 1], output="identity", seed=4)
    W, b = (p.copy() for p in model.params[0])
    lr = 0.1
    expected = []
    for rows in (slice(0, 30), slice(30, 40)):
        Xc, yc = X[rows], y[rows]
        residual = Xc @ W + b - yc                       # dJ/dZ for J = (1/m) sum 0.5 ||z - y||^2 (B8)
        dW, db = Xc.T @ residual / len(Xc), residual.mean(axis=0)   # B2, B3
        expected.append((np.r_[(W - lr * dW).ravel(), b - lr * db], len(Xc)))
    theta = (expected[0][0] * 30 + expected[1][0] * 10) / 40
    distributed.fit_distributed(model, da.from_array(X, chunks=((30, 10), 2)), da.from_array(y, chunks=((30, 10), 1)),
                                epochs=1, optimizer=lg.SGD(lr), batch_size=64, shuffle=False)
    assert np.allclose(model.theta, theta, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("chunks", [(50, 3, 40, 1, 9), (1,) * 7 + (96,), (103,)], ids=["uneven", "single-rows", "one"])
def test_chunks_of_any_size_train_and_agree_with_themselves(data, chunks):
    X, y = data
    runs = []
    for _ in range(2):
        model = lg.MLP([7, 9, 4], seed=1)
        h = distributed.fit_distributed(model, da.from_array(X, chunks=(chunks, 7)), da.from_array(y, chunks=(chunks,)),
                                        epochs=6, optimizer=lg.Adam(1e-2), batch_size=8, seed=3)
        runs.append(model.theta.copy())
        assert h.epochs == 6 and h.loss[-1] < h.loss[0]
    assert np.array_equal(*runs)  # same seed, same chunks: the same parameters, bit for bit


def test_empty_chunks_are_skipped_in_the_average(data):
    X, y = data
    dX = da.concatenate([da.from_array(X[:50], chunks=(50, 7)), da.zeros((0, 7), chunks=(0, 7)),
                         da.from_array(X[50:], chunks=(53, 7))])
    dy = da.from_array(y, chunks=((50, 0, 53),))
    a, b = lg.MLP([7, 9, 4], seed=1), lg.MLP([7, 9, 4], seed=1)
    distributed.fit_distributed(a, dX, dy, epochs=2, optimizer=lg.SGD(0.05), batch_size=10, seed=0)
    distributed.fit_distributed(b, da.from_array(X, chunks=((50, 53), 7)), da.from_array(y, chunks=((50, 53),)),
                                epochs=2, optimizer=lg.SGD(0.05), batch_size=10, seed=0)
    # chunk seeds follow chunk positions, so compare the sizes that matter: both train all rows
    assert np.isfinite(a.theta).all() and np.isfinite(b.theta).all()
    assert abs(a.loss(X, y) - b.loss(X, y)) < 0.05


def test_numpy_inputs_validation_and_early_stopping(data):
    X, y = data
    model = lg.MLP([7, 9, 4], seed=2)
    h = distributed.fit_distributed(model, X, y, epochs=40, optimizer=lg.Adam(5e-2), batch_size=16,
                                    validation_split=0.2, early_stopping=True, patience=2, seed=1)
    assert len(h.val_loss) == h.epochs == len(h.val_accuracy) and h.best_epoch >= 0
    assert h.stopped_early and "early stopping" in h.stop_reason
    J_best = h.val_loss[h.best_epoch]
    h2 = distributed.fit_distributed(lg.MLP([7, 9, 4], seed=2), X, y, epochs=3, optimizer=lg.Adam(5e-2),
                                     batch_size=16, validation_data=(X[:20], y[:20]), sync_every=2)
    assert h2.epochs == 2 and len(h2.val_accuracy) == 2  # 3 passes in rounds of 2 local epochs: 2 rounds
    assert np.isfinite(J_best)


def test_dpsgd_and_bad_options_are_refused(data):
    X, y = data
    with pytest.raises(ValueError, match="DPSGD is not supported"):
        distributed.fit_distributed(lg.MLP([7, 4]), X, y, 1, lg.DPSGD(), batch_size=8)
    with pytest.raises(ValueError, match="sync_every"):
        distributed.fit_distributed(lg.MLP([7, 4]), X, y, 1, batch_size=8, sync_every=0)
    with pytest.raises(ValueError, match="available with local SGD"):
        distributed.fit_distributed(lg.MLP([7, 4]), X, y, 1, validation_split=0.1)
    with pytest.raises(TypeError, match="both dask arrays or both NumPy"):
        distributed.fit_distributed(lg.MLP([7, 4]), da.from_array(X), y, 1, batch_size=8)


def _kill_one_worker(client, when):
    import os
    import signal
    import time
    pids = client.run(os.getpid)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)
    when.append(time.monotonic())


@pytest.mark.slow
def test_a_killed_worker_costs_a_recomputation_not_the_training():
    """Two worker processes; one is killed (SIGKILL) in the middle of the run. Dask recomputes its
    chunks and tasks on the restarted worker; the run finishes with the parameters of an
    undisturbed run, bit for bit (each chunk's shuffling seed depends on its position only)."""
    import os
    import threading
    import time

    from distributed import Client, LocalCluster
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40_000, 10)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64)
    kwargs = dict(epochs=8, optimizer=lg.SGD(0.05), batch_size=32, seed=7)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        warm = lg.MLP([10, 16, 2], dtype="float32")
        distributed.fit_distributed(warm, X, y, epochs=1, batch_size=32, client=client)  # workers load the kernels
        calm = lg.MLP([10, 16, 2], dtype="float32", seed=1)
        h_calm = distributed.fit_distributed(calm, X, y, client=client, **kwargs)
        hit = lg.MLP([10, 16, 2], dtype="float32", seed=1)
        before = set(client.run(os.getpid).values())
        killed = []
        timer = threading.Timer(max(0.2, 2.5 * np.median(h_calm.epoch_seconds)), _kill_one_worker, [client, killed])
        timer.start()
        h_hit = distributed.fit_distributed(hit, X, y, client=client, **kwargs)
        ended = time.monotonic()
        timer.join()
        client.wait_for_workers(2)
        after = set(client.run(os.getpid).values())
    assert before != after and killed[0] < ended  # a worker was killed during the run (its nanny restarted it)
    assert h_hit.epochs == 8 and np.array_equal(hit.theta, calm.theta)
    assert hit.score(X, y) > 0.9
