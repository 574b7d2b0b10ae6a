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
