"""Training steps of every runtime in fresh processes (loopgrad.bench_fresh): the loops on 2 and 1
threads, their NumPy twin, PyTorch eager and JAX's jit of a lax.scan over the epoch, where installed;
every case in float32 and in float64; beside each, what two threads gave on the host meanwhile
(``two_thread_scaling``).

The timed call is one whole measurement (several processes per runtime, the runtimes taking turns);
the numbers that matter, the median microseconds per step over processes and the spread, are in
``extra_info`` and printed. ``--bench-sizes small`` (CI) runs the smallest case with one process each.
"""
import math

import pytest

from loopgrad import bench_fresh
from conftest import sized


@pytest.mark.parametrize("case_dtype", sized([(case, dtype) for dtype in ("float32", "float64")
                                               for case in bench_fresh.CASES]))
def test_fresh_process_steps(benchmark, case_dtype, request):
    case, dtype = case_dtype
    small = request.config.getoption("--bench-sizes") == "small"
    processes = 1 if small else 5
    peak = bench_fresh.sgemm_peak(dtype)
    rows = benchmark.pedantic(bench_fresh.measure, args=([case],), kwargs={"processes": processes, "dtype": dtype},
                              rounds=1, iterations=1)
    benchmark.group = f"fresh processes {'-'.join(map(str, case[0]))} batch={case[1]} {dtype}"
    benchmark.extra_info["gemm_peak_gflops"] = peak
    benchmark.extra_info["us_per_step"] = {r[0]: r[3] for r in rows}
    benchmark.extra_info["spread"] = {r[0]: r[4] for r in rows}
    # what the host gave the second thread meanwhile: a two-thread runtime's spread comes from there
    probe = bench_fresh.two_thread_scaling(0.2 if small else bench_fresh.PROBE_SECONDS)
    benchmark.extra_info["two_thread_probe"] = probe
    print("\n" + bench_fresh.table(rows, peak, dtype) + "\n" + bench_fresh.scaling_line(probe))
    assert probe["pairs"] >= 3 and probe["median"] > 0 and 0 <= probe["slow"] <= 1
    assert {r[0] for r in rows} >= {"loops", "loops-1t", "numpy"}
    assert all(math.isfinite(r[3]) and r[3] > 0 for r in rows)


@pytest.mark.small
def test_fresh_process_dp_ratio(benchmark, request):
    """DP-SGD's step over the plain SGD step, each fresh process alternating rounds of the two (the
    ratio of #14, 784-128-64-10, batch 64); the ratio and its range over processes in ``extra_info``."""
    processes = 1 if request.config.getoption("--bench-sizes") == "small" else 5
    result = benchmark.pedantic(bench_fresh.dp_ratio, kwargs={"processes": processes}, rounds=1, iterations=1)
    benchmark.group = "fresh processes DP-SGD step / SGD step"
    benchmark.extra_info.update({k: result[k] for k in ("ratio", "low", "high", "plain", "dp")})
    print("\n" + bench_fresh.dp_table(result))
    assert len(result["per_process"]) == processes and result["dp"] > 0 and result["plain"] > 0
