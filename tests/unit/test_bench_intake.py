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
