"""DP-SGD: the counter-based noise drawn in the compiled step, its accounting by dp-accounting,
Poisson sampling, a target epsilon, and the secure mode."""
import json

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import loopgrad as lg
from loopgrad import datasets
from loopgrad.cli import main
from loopgrad.kernels import noise as loop_noise
from loopgrad.reference import noise as numpy_noise

dp_accounting = pytest.importorskip("dp_accounting")


@given(key=st.integers(0, 2 ** 53 - 1), t=st.integers(0, 2 ** 40), n=st.integers(0, 3000))
def test_noise_equals_its_twin_bit_for_bit(key, t, n):
    # the same integer words and the same float32 operations, each rounded alike: exact equality
    assert np.array_equal(loop_noise.gaussian_noise(key, t, n), numpy_noise.gaussian_noise(key, t, n))


def test_the_radius_slow_path_equals_its_twin():
    """Pairs whose radius uniform lies below 2^-15 (one in 32,768) take the float64 slow path; these
    200,000 deviates hold such pairs (counted from the words), match the twin bit for bit, and the
    slow pairs' radii lie beyond the fast path's last, sqrt(30 ln 2) = 4.5601."""
    n, key, t = 200_000, 7, 3
    z = loop_noise.gaussian_noise(key, t, n)
    assert np.array_equal(z, numpy_noise.gaussian_noise(key, t, n))
    c = np.array([t], np.uint64) * np.uint64(n // 2) + np.arange(n // 2, dtype=np.uint64)
    slow = (numpy_noise._word(key, c, 0) >> np.uint64(33)) < 2 ** 16
    assert slow.sum() >= 2
    radius = np.hypot(z[0::2], z[1::2])
    assert (radius[slow] > 4.5601).all() and (radius[~slow] < 4.5602).all()


@pytest.mark.parametrize("p0,n", [(1, 1), (3, 2), (1001, 1500), (8191, 2049)])
def test_noise_of_any_slice_equals_the_whole_blocks(p0, n):
    """A block may start at an odd parameter (the second half of its first word) and span chunks."""
    P = 12_000
    whole = loop_noise.gaussian_noise(17, 5, P)
    part = np.empty(n)
    loop_noise._normals_range(np.uint64(17), 5, P, part, p0)
    assert np.array_equal(part, whole[p0:p0 + n])


def test_noise_is_standard_normal():
    """2 x 10^7 deviates: mean, variance and the tail counts beyond 1..5 sigma, each within 5 standard
    errors (a correct generator fails one of these with probability below 10^-5)."""
    n = 20_000_000
    z = loop_noise.gaussian_noise(99, 1, n)
    assert abs(z.mean()) < 5 / np.sqrt(n) and abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    # 4.5601 = sqrt(30 ln 2), the radius where the slow path (u below 2^-15) takes over
    for c in (1.0, 2.0, 3.0, 4.0, 4.560089408860133, 5.0):
        expected = 2 * stats.norm.sf(c) * n
        assert abs((np.abs(z) > c).sum() - expected) < 5 * np.sqrt(expected) + 1, c
    assert stats.kstest(z[:1_000_000], "norm").pvalue > 1e-5
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(n)
    # neighbouring steps and neighbouring keys give unrelated noise
    assert abs(np.corrcoef(z[:100_000], loop_noise.gaussian_noise(99, 2, 100_000))[0, 1]) < 0.02
    assert abs(np.corrcoef(z[:100_000], loop_noise.gaussian_noise(100, 1, 100_000))[0, 1]) < 0.02


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("P,rows", [(1, 0.0), (5000, 0.0), (70_000, 40.0)])
def test_noisy_mean_equals_its_twin(dtype, P, rows):
    """P = 70 000 takes the parallel blocks; the twin draws the same deviates, so the only difference
    is the rounding of one multiply-add in the gradient's dtype (tolerance 2 ulp of the values)."""
    rng = np.random.default_rng(P)
    grad = rng.normal(size=P).astype(dtype)
    hyper = np.zeros(lg.optim.N_HYPER)
    hyper[[lg.optim.H_CLIP, lg.optim.H_NOISE_STD, lg.optim.H_NOISE_KEY, lg.optim.H_MEAN_ROWS]] = 1.0, 0.8, 12345, rows
    loops = grad.copy()
    loop_noise._dp_noise_into(loops, np.zeros(0, dtype), hyper, 7, 32)
    twin = numpy_noise._dp_noise(grad, np.zeros(0, dtype), hyper, 7, 32)
    eps = np.finfo(dtype).eps
    assert np.allclose(loops, twin, rtol=2 * eps, atol=2 * eps)


def _dp_fit(threads, **options):
    data = datasets.load("digits", dtype="float32")
    model = datasets.model_for(data, hidden=[32], dtype="float32")
    opt = lg.DPSGD(0.2, clip_norm=1.0, noise_multiplier=1.0, seed=5, **options)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        history = model.fit(data.X_train, data.y_train, epochs=3, batch_size=64, optimizer=opt, progress=False)
    finally:
        numba.set_num_threads(before)
    return model, opt, history, data


def test_dp_training_is_deterministic_on_one_and_two_threads():
    a, _, _, _ = _dp_fit(1)
    b, _, _, _ = _dp_fit(numba.config.NUMBA_NUM_THREADS)
    c, _, _, _ = _dp_fit(numba.config.NUMBA_NUM_THREADS)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(b.theta, c.theta)


def test_dp_training_matches_the_numpy_twin():
    data = datasets.load("iris", dtype="float64")
    thetas = []
    for backend in ("loops", "numpy"):
        model = datasets.model_for(data, hidden=[8], dtype="float64")
        model.fit(data.X_train, data.y_train, epochs=3, batch_size=16, progress=False, backend=backend,
                  optimizer=lg.DPSGD(0.1, noise_multiplier=1.3, seed=2))
        thetas.append(model.theta)
    # float64, 24 steps of clipping and noise: the twins' products sum in different orders
    assert np.allclose(*thetas, rtol=1e-9, atol=1e-11)


def test_every_fit_draws_new_noise():
    """Reusing an optimizer must not replay the noise of its first fit (that would cancel privacy)."""
    data = datasets.load("iris", dtype="float64")
    opt = lg.DPSGD(0.1, noise_multiplier=1.0, seed=0)
    runs = []
    for _ in range(2):
        model = datasets.model_for(data, hidden=[8], dtype="float64")
        model.fit(data.X_train, data.y_train, epochs=1, batch_size=16, optimizer=opt, progress=False)
        runs.append(model.theta.copy())
    assert not np.allclose(*runs)
    assert opt.steps == 2 * 8


def test_epsilon_is_what_the_accountant_says():
    _, opt, history, _ = _dp_fit(numba.config.NUMBA_NUM_THREADS)
    from dp_accounting import dp_event, rdp
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_event.PoissonSampledDpEvent(opt.sample_rate, dp_event.GaussianDpEvent(1.0)), opt.steps)
    assert opt.epsilon(1e-5) == accountant.get_epsilon(1e-5)
    assert history.epsilon[-1] == (opt.epsilon(), 1e-5)
    assert [e for e, _ in history.epsilon] == sorted(e for e, _ in history.epsilon)  # spent, never returned
    # the README's digits setting: sigma 1.0, 345 steps of batch 64 over 1437 rows
    fresh = lg.DPSGD(noise_multiplier=1.0)
    fresh.start(1437, 64)
    fresh.record(345)
    assert fresh.epsilon(1e-5) == pytest.approx(6.11, abs=0.01)
    assert lg.DPSGD(noise_multiplier=0.0).epsilon() == 0.0


def test_target_epsilon_stops_training_before_it_is_passed():
    model, opt, history, _ = _dp_fit(numba.config.NUMBA_NUM_THREADS, target_epsilon=1.0)
    assert history.stopped_early and "target_epsilon" in history.stop_reason
    assert opt.epsilon() <= 1.0 and history.epochs < 3


def test_poisson_sampling_divides_by_the_expected_batch_size():
    model, opt, history, data = _dp_fit(numba.config.NUMBA_NUM_THREADS, poisson=True)
    n = data.X_train.shape[0]
    assert opt.sample_rate == pytest.approx(64 / n) and opt.steps == 3 * round(n / 64)
    assert "Poisson sampling" in opt.accounting and np.isfinite(history.loss).all()
    hyper = opt.hyper()
    assert hyper[lg.optim.H_MEAN_ROWS] == pytest.approx(64)


def test_secure_noise_comes_from_the_os_and_has_the_right_spread():
    opt = lg.DPSGD(noise_multiplier=2.0, clip_norm=0.5, secure=True)
    opt.start(100, 10)
    a, b = opt.noise(2, 200_000, np.float64), opt.noise(2, 200_000, np.float64)
    assert a.shape == (2, 200_000) and not np.array_equal(a, b)
    assert abs(a.std() - 1.0) < 0.01 and abs(a.mean()) < 0.01
    assert opt.hyper()[lg.optim.H_NOISE_STD] == 0.0  # the compiled step adds the block instead


def test_dp_options_are_checked():
    with pytest.raises(ValueError, match="delta"):
        lg.DPSGD(delta=0.0)
    with pytest.raises(ValueError, match="target_epsilon"):
        lg.DPSGD(target_epsilon=-1)
    with pytest.raises(TypeError, match="seed"):
        lg.DPSGD(seed=1.5)


def test_cli_reports_epsilon(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--dp-noise", "1.0",
                 "--dp-clip", "1.0", "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert 0 < result["privacy"]["epsilon"] < 10 and result["privacy"]["delta"] == 1e-5
    assert "-DP for the" in captured.err


def test_estimators_train_privately_and_report_epsilon():
    from loopgrad.sklearn import MLPClassifier
    data = datasets.load("digits")
    clf = MLPClassifier((32,), solver="sgd", learning_rate_init=0.2, momentum=0.0, batch_size=64, max_iter=5,
                        dp_clip=1.0, dp_noise=1.0, random_state=0).fit(data.X_train, data.y_train)
    assert 0 < clf.dp_epsilon_ < 5 and clf.score(data.X_test, data.y_test) > 0.7
    assert MLPClassifier(max_iter=2).fit(data.X_train[:50], data.y_train[:50]).dp_epsilon_ is None
    with pytest.raises(ValueError, match="solver='sgd'"):
        MLPClassifier(dp_noise=1.0).fit(data.X_train, data.y_train)


def test_epsilon_at_small_noise_logs_nothing(caplog):
    """At sigma = 0.5 the RDP series of some orders do not converge and dp-accounting logs a warning
    per order and per composition; the epsilon leaves those orders out, and the user sees none of it."""
    import logging
    opt = lg.DPSGD(0.1, noise_multiplier=0.5)
    opt._segments = [[64 / 1437, 345]]
    with caplog.at_level(logging.WARNING):
        eps = opt.epsilon(1e-5)
    assert 30 < eps < 36  # the digits setting of the README: 33.30
    assert not [r for r in caplog.records if r.name.startswith("absl")]
