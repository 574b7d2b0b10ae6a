"""Model files are written atomically and read as untrusted input; failed runs leave no half state."""
import os
import pathlib
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


_SMALL_KERNEL = ("import numpy as np, warnings\nwarnings.simplefilter('always')\nfrom loopgrad import kernels\n"
                 "print(kernels.loss_forward('cross_entropy', np.array([[1.0, 2.0, 3.0]]), np.array([[0.0, 0.0, 1.0]])))")


def _run_small_kernel(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-c", _SMALL_KERNEL], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.own_cache
def test_a_corrupted_kernel_cache_heals_with_one_warning(tmp_path):
    first = _run_small_kernel(tmp_path)
    assert first.returncode == 0 and "CacheWarning" not in first.stderr
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[:20])  # truncated, as by a crash or a full disk
    second = _run_small_kernel(tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == first.stdout
    assert second.stderr.count("unreadable kernel cache entries") == 1 and "Traceback" not in second.stderr
    third = _run_small_kernel(tmp_path)
    assert third.returncode == 0 and third.stdout == first.stdout and "CacheWarning" not in third.stderr


_PRODUCT = ("import numpy as np\nfrom loopgrad import kernels\nrng = np.random.default_rng(0)\n"
            "print(kernels.dense_forward(rng.standard_normal((7, 20)), rng.standard_normal((20, 9)), np.zeros(9)).tolist())")


@pytest.mark.own_cache
def test_a_cached_kernel_whose_register_blocks_left_the_cache_compiles_them_again(tmp_path):
    """The kernels call the register blocks (``_numba.outer_rows``) as a compiled leaf by its symbol;
    loading a cached kernel registers the leaves its code names first. With the leaves' own entries
    gone, the next process compiles them again instead of calling an unresolved symbol (a segfault)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = [sys.executable, "-c", _PRODUCT]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    leaves = [p for p in tmp_path.rglob("*_outer_rows_leaf_*")]
    assert leaves and any(p.suffix == ".nbc" for p in leaves)
    for p in leaves:
        p.unlink()
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == first.stdout and "Traceback" not in second.stderr
    assert any(tmp_path.rglob("*_outer_rows_leaf_*.nbc"))  # compiled again and kept


def test_the_leaves_a_cached_kernel_names_are_registered():
    from loopgrad import _numba
    if not _numba.EXTERN_BLOCKS:
        pytest.skip("the register blocks are inlined here (JIT off or no cache hook)")
    symbol = _numba.LEAF_PREFIX + "float64_A"
    # numba's cache entry: nested tuples around the object code, which names the symbols it calls
    _numba.register_leaves_in(("name", ("object", [b"\x00call " + symbol.encode() + b"\x00"]), {"k": None}))
    assert symbol in _numba._leaves
    from llvmlite import binding
    assert binding.address_of_symbol(symbol) == _numba._leaves[symbol].address
    # an entry with no code where the walk looks (another numba's layout): every leaf, to be safe
    _numba.register_leaves_in(("name", "object", 1234))
    assert all(_numba.LEAF_PREFIX + f"{d}_{l}" in _numba._leaves for d in ("float32", "float64") for l in "CFA")


@pytest.mark.own_cache
def test_an_unwritable_cache_folder_warns():
    out = _run_small_kernel("/proc/loopgrad-no-cache-here")
    assert out.returncode == 0
    assert "NUMBA_CACHE_DIR=/proc/loopgrad-no-cache-here cannot be written" in out.stderr


def test_the_cache_goes_stale_with_any_kernel_source(tmp_path):
    """numba alone watches a function's own file; loopgrad's stamp covers every file kernel code is
    built from, so an edit to _gemm.py invalidates the cached kernels of dense.py too."""
    import shutil

    from loopgrad import _numba
    package = tmp_path / "loopgrad"
    shutil.copytree(pathlib.Path(_numba.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _numba.source_stamp(package)
    (package / "cli.py").write_text((package / "cli.py").read_text() + "\n# not kernel code\n")
    assert _numba.source_stamp(package) == before
    gemm = package / "kernels" / "_gemm.py"
    gemm.write_text(gemm.read_text() + "\n# a changed product\n")
    assert _numba.source_stamp(package) != before


_FORK = """
import os, warnings, numpy as np, loopgrad as lg
from loopgrad import kernels
X = np.random.default_rng(0).standard_normal((512, 300)).astype('float32')
y = np.arange(512) % 3
parent = lg.MLP([300, 300, 3], dtype='float32')  # 256 x 300 x 300 multiply-adds: the parallel path
parent.fit(X, y, epochs=1, batch_size=256, progress=False)
pid = os.fork()
if pid == 0:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        child = lg.MLP([300, 300, 3], dtype='float32', seed=1)
        child.fit(X, y, epochs=3, batch_size=256, progress=False)
        trained = child.score(X, y) > 0.5 and any('forked' in str(w.message) for w in caught)
    try:
        kernels.dense_forward(X, np.ones((300, 300), 'float32'), np.zeros(300, 'float32'))
        refused = False
    except RuntimeError as e:
        refused = 'forked' in str(e) and 'spawn' in str(e)
    os._exit(0 if trained and refused else 3)
_, status = os.waitpid(pid, 0)
print('child', os.waitstatus_to_exitcode(status))
parent.fit(X, y, epochs=1, batch_size=256, progress=False)
print('parent trained on')
"""


def test_a_child_forked_after_import_trains_and_is_never_killed():
    out = subprocess.run([sys.executable, "-c", _FORK], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "child 0" in out.stdout and "parent trained on" in out.stdout, (out.stdout, out.stderr[-2000:])
    assert "Terminating" not in out.stderr


def test_ctrl_c_stops_training_within_a_second(ctrl_c_after_a_second):
    """One epoch of 400,000 rows x 100-2048-10 is about 540 GFLOP (about 10 s on the 2-core machine);
    Ctrl-C after 1 s must stop it at the next mini-batch (milliseconds), not at the end of the epoch,
    and leave finite parameters. The bound is on responsiveness, which only a clock can show."""
    kind, seconds, finite = ctrl_c_after_a_second([100, 2048, 10])
    assert kind == "module" and seconds < 2.0 and finite  # numba's kernels (loopgrad.kernels.network)


def test_every_compiled_call_of_the_model_runs_on_one_long_lived_thread(monkeypatch, rng):
    """GNU OpenMP keeps a thread team per thread that opens a parallel region, and with more teams than
    CPUs its workers sleep between regions (``loopgrad._compute``). So fit's epochs, the forward
    passes, the gradients and the objective all run on the one compute thread, from whichever thread
    calls them, fit after fit."""
    import threading

    from loopgrad import _compute

    ran_on, real_run = [], _compute.run

    def spy(call, stop=None):
        def recorded():
            ran_on.append(threading.get_ident())
            return call()
        return real_run(recorded, stop)
    monkeypatch.setattr(_compute, "run", spy)
    X, y = rng.standard_normal((300, 20)).astype(np.float32), rng.integers(0, 3, 300)
    model = lg.MLP([20, 32, 3], dtype="float32")
    model.fit(X, y, epochs=2, batch_size=64, progress=False)
    model.predict(X)
    model.gradients(X, y)
    model.objective(X, y)(model.theta.copy())
    other = threading.Thread(target=lambda: model.fit(X, y, epochs=2, batch_size=64, progress=False))
    other.start()
    other.join()
    assert len(ran_on) >= 6
    assert set(ran_on) == {_compute._worker[1].ident} and threading.get_ident() not in ran_on


def test_the_compute_thread_returns_raises_and_keeps_the_callers_thread_count():
    import numba

    from loopgrad import _compute

    assert _compute.run(lambda: 41 + 1) == 42
    with pytest.raises(ZeroDivisionError):
        _compute.run(lambda: 1 / 0)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert _compute.run(numba.get_num_threads) == 1
    finally:
        numba.set_num_threads(before)
    assert _compute.run(numba.get_num_threads) == before
    assert _compute.run(_compute.on_compute_thread) and not _compute.on_compute_thread()
