"""Time to accuracy of one configuration, in this process: ``python bench/time_to_accuracy.py MODE ROWS EPOCHS``.

MODE: ``single`` (``MLP.fit``, as many numba threads as NUMBA_NUM_THREADS allows) or ``dask-2``
(``fit_distributed`` on a LocalCluster of 2 worker processes with 1 thread each, standing in for two
machines; the rows are persisted on the workers before the clock starts, as data loaded there
would be). The task: a random teacher network 32-64-10 labels Gaussian inputs (ROWS training rows,
ROWS / 5 validation rows); the student is 32-64-10 ReLU/softmax, float32, Adam(2e-3), batch 64.
Prints one JSON line: cumulative training seconds and validation accuracy after each epoch (round),
and for dask the slowest task's own compute per round. ``bench/test_bench_distributed.py`` runs
each mode in fresh processes and compares them.
"""
import json
import os
import sys
import time

import numpy as np


# Each worker takes half the steps per pass of one process; a step twice as long makes up for it
# (a usual rule for averaged local SGD: the learning rate grows with the number of workers).
LR_SINGLE = float(os.environ.get("LOOPGRAD_LR_SINGLE", "2e-3"))
LR_DASK = float(os.environ.get("LOOPGRAD_LR_DASK", "4e-3"))


def teacher_data(rows, seed=0):
    rng = np.random.default_rng(seed)
    n = rows + rows // 5
    X = rng.standard_normal((n, 32), dtype=np.float32)
    W1, W2 = rng.standard_normal((32, 64)), rng.standard_normal((64, 10))
    y = (np.maximum(X @ W1, 0) @ W2).argmax(axis=1)
    return X[:rows], y[:rows], X[rows:], y[rows:]


def main(mode, rows, epochs):
    import loopgrad as lg
    X, y, Xv, yv = teacher_data(rows)
    model = lg.MLP([32, 64, 10], dtype="float32", seed=1)
    model.warmup(64)
    out = {"mode": mode, "rows": rows, "seconds": [], "val_accuracy": []}
    if mode == "single":
        h = model.fit(X, y, epochs=epochs, batch_size=64, optimizer=lg.Adam(LR_SINGLE), validation_data=(Xv, yv),
                      progress=False, seed=0)
        out["seconds"] = list(np.cumsum(h.epoch_seconds))  # the training calls only, not the evaluations
        out["val_accuracy"] = h.val_accuracy
    else:
        import dask.array as da
        from distributed import Client, LocalCluster

        from loopgrad import distributed
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            client.run(lambda: __import__("loopgrad").MLP([32, 64, 10], dtype="float32").warmup(64))
            dX = client.persist(da.from_array(X, chunks=(-(-rows // 2), 32)))
            dy = client.persist(da.from_array(y, chunks=-(-rows // 2)))
            client.wait_for_workers(2)
            h = distributed.fit_distributed(model, dX, dy, epochs=epochs, optimizer=lg.Adam(LR_DASK), batch_size=64,
                                            client=client, validation_data=(Xv, yv), seed=0)
            out["seconds"] = list(np.cumsum(h.epoch_seconds))
            out["val_accuracy"] = h.val_accuracy
            out["round_seconds"] = h.epoch_seconds
            out["compute_seconds"] = h.compute_seconds
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
