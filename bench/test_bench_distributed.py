"""Data-parallel gradients on Dask: time per example with 1 vs 2 workers, and the engine's overhead
against the single-process loop kernels on the same rows.

The large case has about 10^6 rows (float32, 32 features, 16 chunks); CI runs only the small one.
"""
import numpy as np
import pytest

import loopgrad as lg

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("loopgrad.distributed")

ROWS = [pytest.param(20_000, marks=pytest.mark.small), 1_000_000]


@pytest.fixture(scope="module")
def cluster_factory():
    from distributed import Client, LocalCluster
    made = []

    def make(n_workers):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        made.append((client, cluster))
        return client
    yield make
    for client, cluster in made:
        client.close()
        cluster.close()


def _data(rows):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 32), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    return X, y


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("engine", ["single-process", "dask-1-worker", "dask-2-workers"])
def test_distributed_gradients(benchmark, rows, engine, cluster_factory):
    X, y = _data(rows)
    model = lg.MLP([32, 64, 10], dtype="float32")
    benchmark.group = f"gradients {rows} rows, 32-64-10 float32 (per call; divide by rows for per example)"
    benchmark.extra_info["rows"] = rows
    J_ref, _ = model.gradients(X, y)
    if engine == "single-process":
        run = lambda: model.gradients(X, y)  # noqa: E731
    else:
        client = cluster_factory(1 if engine == "dask-1-worker" else 2)
        chunk = max(rows // 16, 1)
        dX = client.persist(da.from_array(X, chunks=(chunk, 32)))
        dy = client.persist(da.from_array(y, chunks=chunk))
        run = lambda: distributed.gradients(model, dX, dy, client=client)  # noqa: E731
    J, _ = run()
    assert abs(float(J) - float(J_ref)) < 1e-4 * abs(float(J_ref))
    benchmark.pedantic(run, rounds=3, iterations=1)
