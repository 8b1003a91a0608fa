"""The bench's own arithmetic: how figures become percentiles, medians, ratios, verdicts
and the legs of a round trip. (The measurements themselves are run by hand: bench/.)"""

from __future__ import annotations

import pytest

from bench.common import Plan, percentile, spread
from bench.legs import legs
from bench.profile import read, table
from bench.report import legs_table, summarise


def test_percentile_is_nearest_rank() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 99) == 5.0
    assert percentile(samples, 0) == 1.0
    # Where q% of n is a whole odd rank (Python's round() would go to the even one).
    ten = [float(n) for n in range(10, 0, -1)]
    assert (percentile(ten, 10), percentile(ten, 30), percentile(ten, 50)) == (1.0, 3.0, 5.0)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_splits_work_as_evenly_as_possible() -> None:
    assert spread(10, 4) == [3, 3, 2, 2]
    assert spread(2, 4) == [1, 1, 0, 0]


def _stamps(*round_trips: list[float]) -> dict[str, list[float]]:
    """Stamps (seconds) of round trips that each pass `issued`, `taken` and `recorded`."""
    points = ("issued", "taken", "recorded")
    return {point: [trip[i] for trip in round_trips] for i, point in enumerate(points)}


def test_legs_follow_each_round_trip_through_its_points() -> None:
    stamps = _stamps([0.0, 0.000_100, 0.001_000], [1.0, 1.000_300, 1.002_000])
    found = legs(stamps, 2)
    assert found["taken"] == pytest.approx(200)  # µs: the median of 100 and 300
    assert found["recorded"] == pytest.approx(1300)  # of 900 and 1,700
    assert found["total"] == pytest.approx(1500)  # of 1,000 and 2,000


def test_legs_skip_a_stamp_no_round_trip_passed_then() -> None:
    stamps = _stamps([1.0, 1.000_100, 1.001_000])
    stamps["taken"].insert(0, 0.5)  # e.g. a worker's periodic status, heard before
    assert legs(stamps, 1)["taken"] == pytest.approx(100)


def test_legs_leave_out_a_round_trip_that_never_finished() -> None:
    stamps = _stamps([0.0, 0.000_100, 0.001_000])
    stamps["issued"].append(2.0)
    stamps["taken"].append(2.000_500)  # ... and never recorded
    found = legs(stamps, 2)
    assert found["taken"] == pytest.approx(100)
    assert found["total"] == pytest.approx(1000)


def test_legs_count_only_the_last_round_trips_after_the_warm_up() -> None:
    stamps = _stamps([0.0, 0.000_900, 0.001_000], [1.0, 1.000_100, 1.001_000])
    assert legs(stamps, 1)["taken"] == pytest.approx(100)


def test_the_legs_table_shows_a_dash_where_a_side_has_no_such_leg() -> None:
    table = legs_table({"fireworks.leg_taken": 179.4, "fireworks.leg_total": 1333.0})
    assert "| handed from the calling thread to the bus thread | 179 | - |" in table
    assert "| the whole round trip | 1,333 | - |" in table


def test_a_target_is_judged_on_the_median_of_the_runs_ratios() -> None:
    plan = Plan.quick(3)
    runs = [
        {"fireworks.rtt_1_p50": fireworks, "floor.rtt_p50": 1.0} for fireworks in (1.4, 1.7, 1.6)
    ]
    summary = summarise(plan, runs, [], {})
    verdict = next(t for t in summary["targets"] if t["key"] == "rtt_1/floor")
    assert verdict["each"] == pytest.approx([1.4, 1.7, 1.6])
    assert verdict["value"] == pytest.approx(1.6)
    assert verdict["pass"] is False
    unmeasured = next(t for t in summary["targets"] if t["key"] == "storm/floor")
    assert unmeasured["value"] is None and unmeasured["pass"] is False


def test_idle_cpu_is_the_mean_of_the_windows_and_rss_their_median() -> None:
    windows = [
        {"footprint.monitor_cpu_pct": cpu, "footprint.monitor_rss_mb": rss}
        for cpu, rss in ((0.0, 60.0), (0.0, 61.0), (1.2, 90.0))
    ]
    medians = summarise(Plan.quick(3), [], windows, {})["median"]
    assert medians["footprint.monitor_cpu_pct"] == pytest.approx(0.4)  # a burst counts
    assert medians["footprint.monitor_rss_mb"] == pytest.approx(61.0)


def test_a_profile_counts_samples_by_thread_and_by_function_once_per_stack() -> None:
    raw = [
        "thread (0x1): Thread-1 (run);run (bus/connection.py:283);f (m.py:10);f (m.py:12) 2\n",
        "thread (0x4): Thread-12 (run);run (bus/connection.py:283);f (m.py:10) 1\n",
        "thread (0x2): history-writer;run (store.py:9);write (store.py:20) 1\n",
        "thread (0x3): ;idle (x.py:1) 2\n",
        "\n",
    ]
    profile = read(raw)
    assert profile.samples == 6
    # Threads of a kind (numbered by Python) are one row.
    assert profile.threads == {"Thread (run)": 3, "history-writer": 1, "(unnamed)": 2}
    # Line numbers are dropped: a function is one row, counted once per stack it is on.
    assert profile.own["f (m.py)"] == 3
    assert profile.inclusive["f (m.py)"] == 3
    assert profile.inclusive["run (bus/connection.py)"] == 3
    rows = table("monitor", profile, top=2).splitlines()
    assert rows[0] == "### monitor: 6 samples"
    assert "| Thread (run) | 50.0 |" in rows
    assert "| `f (m.py)` | 50.0 | 50.0 |" in rows
    assert "| `idle (x.py)` | 33.3 | 33.3 |" in rows
    assert not any("write (store.py)" in row for row in rows)  # beyond the top 2
