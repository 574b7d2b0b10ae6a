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


# ---- time to accuracy: 1 process vs 2 worker processes (local SGD with model averaging) ----------

TTA = [pytest.param((50_000, 3, 1), marks=pytest.mark.small), (1_000_000, 6, 3)]


def _run_mode(mode, rows, epochs, threads):
    import json
    import os
    import pathlib
    import subprocess
    import sys
    script = pathlib.Path(__file__).with_name("time_to_accuracy.py")
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, str(script), mode, str(rows), str(epochs)], env=env, capture_output=True,
                         text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _time_to(run, accuracy):
    """Seconds until the run's validation accuracy first reaches ``accuracy`` (inf if never)."""
    for seconds, acc in zip(run["seconds"], run["val_accuracy"]):
        if acc >= accuracy:
            return seconds
    return float("inf")


@pytest.mark.parametrize("case", TTA, ids=lambda c: f"{c[0]}rows")
def test_time_to_accuracy(benchmark, case):
    """Each configuration in ``repeats`` fresh processes: 1 process x 1 thread (the baseline; its final
    validation accuracy is the target), 1 process x 2 threads, and 2 worker processes x 1 thread
    (fit_distributed, local SGD, one local epoch per round, each given 2 more rounds than the
    baseline's epochs). Reported: the median seconds to the baseline's accuracy minus 0.5 points,
    their spread, the ratio to the baseline, and dask's engine overhead per round."""
    rows, epochs, repeats = case
    benchmark.group = f"time to accuracy, {rows} rows, teacher 32-64-10"
    runs = {mode: [_run_mode(*mode_args, rows, epochs + (2 if mode == "dask-2x1" else 0), threads)
                   for _ in range(repeats)]
            for mode, mode_args, threads in (("1x1", ("single",), 1), ("1x2", ("single",), 2),
                                             ("dask-2x1", ("dask-2",), 1))}
    target = float(np.median([r["val_accuracy"][-1] for r in runs["1x1"]])) - 0.005
    table = {}
    for mode, rs in runs.items():
        times = [_time_to(r, target) for r in rs]
        table[mode] = {"median_s": float(np.median(times)), "min_s": min(times), "max_s": max(times),
                       "final_accuracy": [r["val_accuracy"][-1] for r in rs]}
    for mode, row in table.items():
        row["ratio_to_1x1"] = row["median_s"] / table["1x1"]["median_s"]
    overhead = [1 - c / s for r in runs["dask-2x1"] for c, s in zip(r["compute_seconds"], r["round_seconds"])]
    table["dask-2x1"]["engine_overhead_per_round"] = float(np.median(overhead))
    benchmark.extra_info.update(target_accuracy=target, **table)
    print(f"\ntarget validation accuracy {100 * target:.2f}% (1x1's final minus 0.5 points)")
    for mode, row in table.items():
        print(f"{mode:9} median {row['median_s']:6.2f} s [{row['min_s']:.2f}-{row['max_s']:.2f}]  "
              f"ratio {row['ratio_to_1x1']:.2f}")
    print(f"dask engine overhead per round (median): {100 * table['dask-2x1']['engine_overhead_per_round']:.1f}%")
    assert np.isfinite(table["1x1"]["median_s"])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
