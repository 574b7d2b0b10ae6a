import os
import re
import subprocess
import sys

import pytest

from loopgrad.cli import main


def test_check_prints_an_all_ok_table(capsys):
    assert main(["check", "--m", "9", "--n-in", "7", "--n-out", "4"]) == 0
    out = capsys.readouterr().out
    assert "dense_forward" in out and "F1" in out and "FAIL" not in out
    assert "within tolerance" in out


def test_check_fails_when_a_kernel_is_wrong(capsys, monkeypatch):
    from loopgrad import kernels
    real = kernels.dense_forward
    monkeypatch.setattr(kernels, "dense_forward", lambda A, W, b: real(A, W, b) * 1.001)
    assert main(["check"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_train_predict_and_plot(tmp_path, capsys):
    model, png = tmp_path / "m.npz", tmp_path / "curves.png"
    assert main(["train", "--data", "iris", "--hidden", "8", "--epochs", "30", "--lr", "1e-2", "--quiet",
                 "--save", str(model), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "wall time" in out and "kernels ready" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["predict", str(model), "--data", "iris"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["predict", str(model), "--data", "wine"]) == 2
    err = capsys.readouterr().err
    assert "expects 4 features" in err and "Traceback" not in err


def test_regression_cli(capsys):
    assert main(["train", "--data", "diabetes", "--epochs", "3", "--quiet"]) == 0
    assert "test R^2" in capsys.readouterr().out


@pytest.mark.parametrize("argv,words", [
    (["predict", "missing.npz"], "no such model file"),
    (["train", "--epochs", "-1", "--quiet"], "epochs"),
    (["train", "--batch-size", "0", "--quiet"], "batch_size"),
    (["train", "--lr", "-1", "--quiet"], "lr"),
])
def test_errors_are_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_unknown_dataset_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "mnist"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_module_and_console_script_agree():
    for cmd in ([sys.executable, "-m", "loopgrad", "--help"], ["loopgrad", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for sub in ("check", "train", "predict"):
            assert sub in out


def test_garbage_model_file_cli(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    assert main(["predict", str(bad)]) == 2
    assert "not a loopgrad model file" in capsys.readouterr().err


def test_bench_prints_a_table_and_writes_a_plot(tmp_path, capsys):
    png = tmp_path / "bench.png"
    assert main(["bench", "--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "vs NumPy" in out and "dense forward" in out and "train step" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_dp_reports_the_ratio_from_fresh_processes(capsys):
    """``bench --dp`` runs its workers in new processes and reports the median ratio inside its range
    (the ratio itself is measured by the bench suite, not asserted)."""
    assert main(["bench", "--dp", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    ratio, low, high = re.search(r"(\d+\.\d+)x \[(\d+\.\d+)-(\d+\.\d+)\]", out).groups()
    assert "2 fresh processes" in out and float(low) <= float(ratio) <= float(high)
    for flag in ("--dp", "--fresh"):
        assert main(["bench", flag, "--processes", "0"]) == 2
        assert "processes: expected an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.own_cache
def test_cold_start_fills_the_cache_and_a_warm_start_only_reads_it(tmp_path):
    """Cold: a new process with an empty kernel cache compiles and writes it; warm: the next process
    loads every kernel from it and writes nothing. (How long each takes is measured by
    ``loopgrad bench --compile-time``, not asserted here.)"""
    from loopgrad.bench_cli import first_step_seconds

    def snapshot():
        return {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert first_step_seconds("float32", tmp_path) > 0
    cold = snapshot()
    assert any(p.suffix == ".nbc" for p in cold)
    assert first_step_seconds("float32", tmp_path) > 0
    assert snapshot() == cold


def test_a_failed_save_or_plot_after_training_keeps_the_model_and_says_so(tmp_path, capsys):
    import loopgrad as lg
    assert main(["train", "--data", "iris", "--epochs", "3", "--quiet", "--save", "/proc/no/m.npz",
                 "--plot", "/dev/full"]) == 2
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("loopgrad train: error: --save /proc/no/m.npz")
    assert "--plot /dev/full" in lines[1]
    rescued = lines[0].split("saved to ")[1].split(" instead")[0]
    assert lg.MLP.load(rescued).sizes[0] == 4
