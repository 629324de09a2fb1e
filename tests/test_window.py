"""Health's rolling window: fps and latency percentiles over the last seconds, not since start."""

from __future__ import annotations

from device.vision.window import RecentWindow


def test_a_stalled_source_reads_zero_fps_after_the_window():
    w = RecentWindow(span_s=10.0)
    for i in range(300):  # 30 fps for 10 s
        w.add(now=i / 30)
    assert 29 <= w.rate(now=10.0) <= 30.1
    assert w.rate(now=25.0) == 0.0  # nothing for 15 s: the camera stalled


def test_rate_before_the_window_is_full_uses_the_time_since_start():
    w = RecentWindow(span_s=10.0)
    for i in range(30):
        w.add(now=100 + i / 30)
    assert 28 <= w.rate(now=101.0, since=100.0) <= 31


def test_percentiles_forget_old_samples_and_the_window_is_bounded():
    w = RecentWindow(span_s=1.0, max_samples=100)
    for i in range(1000):
        w.add(100.0 if i < 500 else 1.0, now=i / 1000)
    assert w.percentile(50, now=1.0) == 1.0
    assert w.percentile(50, now=5.0) is None
    assert len(w._samples) <= 100
