"""Model files are written atomically and read as untrusted input; failed runs leave no half state."""
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import loopgrad as lg
from loopgrad.cli import main


def test_save_writes_exactly_the_path_given(tmp_path):
    m = lg.MLP([3, 2])
    for name in ("noext", "model.bin", "m.npz"):
        m.save(tmp_path / name)
        assert (tmp_path / name).is_file() and not (tmp_path / f"{name}.npz").exists()
        np.testing.assert_array_equal(lg.MLP.load(tmp_path / name).theta, m.theta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "model.bin", "noext"]  # no temp files left


def test_save_into_a_folder_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(OSError):
        lg.MLP([3, 2]).save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = lg.MLP([4, 3], seed=1)
    old.save(path)

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        lg.MLP([4, 3], seed=2).save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(lg.MLP.load(path).theta, old.theta)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_kill_9_during_saves_leaves_a_loadable_model(tmp_path):
    """A process saving a 4-million-parameter model over and over is killed at a random moment:
    the file on disk is always one whole model."""
    path = tmp_path / "big.npz"
    code = (f"import loopgrad as lg, sys\nm = lg.MLP([2000, 2000], output='identity', dtype='float32')\n"
            f"m.save({str(path)!r}); print('first', flush=True)\nwhile True: m.save({str(path)!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first"
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lg.MLP.load(path).sizes == [2000, 2000]


def _crafted(path, layer_sizes, theta, **replace):
    fields = dict(format_version=np.int64(1), sizes=np.asarray(layer_sizes, np.int64), hidden=np.str_("relu"),
                  output=np.str_("softmax"), dtype=np.str_("float64"), seed=np.int64(0), theta=theta)
    fields.update(replace)
    np.savez(path, **fields)
    return path


def test_crafted_sizes_are_rejected_before_allocating(tmp_path):
    """sizes [20000, 20000] would need 3.2 GB of parameters; the 2 KB file is refused without
    building the model."""
    path = _crafted(tmp_path / "evil.npz", [20000, 20000], np.zeros(4))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"evil.npz: field 'theta'.*\[20000, 20000\]"):
            lg.MLP.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("bad,words", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_non_finite_weights_are_refused(tmp_path, bad, words):
    theta = np.zeros(3 * 2 + 2)
    theta[3] = bad
    path = _crafted(tmp_path / "nan.npz", [3, 2], theta)
    with pytest.raises(ValueError, match=words) as e:
        lg.MLP.load(path)
    assert "nan.npz" in str(e.value) and "'theta'" in str(e.value)


@pytest.mark.parametrize("field,value,words", [
    ("format_version", np.str_("1"), "'format_version'"),
    ("sizes", np.array([[3, 2]]), "'sizes'"),
    ("sizes", np.array([3, 0]), "'sizes'"),
    ("hidden", np.str_("swish"), "'hidden'"),
    ("dtype", np.str_("int8"), "'dtype'"),
])
def test_every_load_error_names_the_file_and_the_field(tmp_path, field, value, words):
    path = _crafted(tmp_path / "bad.npz", [3, 2], np.zeros(8), **{field: value})
    with pytest.raises(ValueError, match=words) as e:
        lg.MLP.load(path)
    assert "bad.npz" in str(e.value)


def test_seed_none_survives_a_round_trip(tmp_path):
    m = lg.MLP([3, 2], seed=None)
    m.save(tmp_path / "m.npz")
    assert lg.MLP.load(tmp_path / "m.npz").seed is None


def test_cli_train_with_zero_epochs(capsys):
    assert main(["train", "--data", "iris", "--epochs", "0", "--quiet"]) == 0
    assert "untrained" in capsys.readouterr().out


def test_cli_predict_refuses_a_model_of_the_wrong_task(tmp_path, capsys):
    reg, clf = tmp_path / "reg.npz", tmp_path / "clf.npz"
    lg.MLP([4, 3, 1], output="identity").save(reg)   # iris has 4 features
    lg.MLP([4, 3, 5], output="softmax").save(clf)    # and 3 classes, not 5
    assert main(["predict", str(reg), "--data", "iris"]) == 2
    assert "regression model" in capsys.readouterr().err
    assert main(["predict", str(clf), "--data", "iris"]) == 2
    assert "5 classes" in capsys.readouterr().err


def test_fit_distributed_restores_and_raises_on_divergence():
    da = pytest.importorskip("dask.array")
    from loopgrad import distributed
    rng = np.random.default_rng(0)
    model = lg.MLP([3, 8, 1], output="identity")
    before = model.theta.copy()
    X, y = rng.standard_normal((64, 3)), 100 * rng.standard_normal(64)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="diverged at epoch"):
        distributed.fit_distributed(model, da.from_array(X, chunks=(16, 3)), da.from_array(y, chunks=16), 30,
                                    lg.SGD(lr=1e3))
    np.testing.assert_array_equal(model.theta, before)
