"""The intake benchmark's windowed rates (bench/intake.py): a falling rate must show as falling windows."""
from bench.intake import window_rates


def test_flat_rate_gives_equal_windows():
    times = [0.01 * (k + 1) for k in range(1000)]          # 100/s throughout
    rates = window_rates(0.0, times, 10)
    assert len(rates) == 10
    assert all(abs(r - 100.0) < 1e-6 for r in rates)


def test_slowing_rate_shows_in_the_last_window():
    times = [0.01 * (k + 1) for k in range(500)] + [5.0 + 0.05 * (k + 1) for k in range(500)]  # 100/s then 20/s
    rates = window_rates(0.0, times, 10)
    assert abs(rates[0] - 100.0) < 1e-6 and abs(rates[-1] - 20.0) < 1e-6


def test_uneven_count_and_too_few():
    rates = window_rates(0.0, [float(k + 1) for k in range(25)], 10)   # 1/s, windows of 2 or 3
    assert all(abs(r - 1.0) < 1e-6 for r in rates)
    assert len(window_rates(0.0, [1.0], 10)) == 10


def test_the_intake_jobs_are_checked_against_plaintext():
    import pytest

    from bench.intake import check_result, client_value, scenario
    from mpcnode.computation.common import client_names

    names = client_names(scenario("auction", 50).bidders)
    bids = sorted((client_value("auction", i)[0], i) for i in range(50))
    right = {"sold": True, "winner": names[bids[-1][1]], "price": bids[-2][0]}
    check_result("auction", names, right)
    with pytest.raises(RuntimeError):
        check_result("auction", names, {**right, "winner": names[bids[-2][1]]})
    with pytest.raises(RuntimeError):
        check_result("auction", names, {**right, "price": bids[-1][0]})
    assert len({client_value("auction", i)[0] for i in range(100_000)}) == 100_000   # distinct bids: one winner
    check_result("vote", ["a"] * 12, {"option-0": 3, "option-1": 3, "option-2": 2, "option-3": 2, "option-4": 2,
                                      "invalid": 0})
    with pytest.raises(RuntimeError):
        check_result("vote", ["a"] * 12, {"option-0": 12, "invalid": 0})
