"""`imgflow recommend`: rates, queueing math, the simulated day and the advice."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from imgflow.advisor import report
from imgflow.advisor.capacity import erlang_c, mmc, size_pool
from imgflow.advisor.costs import ESTIMATE, read_profile
from imgflow.advisor.formatting import format_seconds
from imgflow.advisor.profile import Profile
from imgflow.advisor.profile import write_profile as write_saved_profile
from imgflow.advisor.rates import format_rate, parse_rate
from imgflow.advisor.recommend import AdviceRequest, advise
from imgflow.advisor.simulate import (
    ArrivalPattern,
    ServiceTimes,
    generate_arrivals,
    simulate_day,
)
from imgflow.cli import main
from imgflow.config import PipelineConfig, parse_config
from imgflow.errors import ConfigError, ImageError, Reason, UsageError
from imgflow.stages import validate

GB = 10**9
MB = 10**6


def write_profile(
    folder: Path,
    *,
    mean: float,
    p95: float,
    p99: float | None = None,
    longest: float | None = None,
    peak_rss_bytes: int,
    cores: int,
    memory_bytes: int,
    megapixels: float = 12.0,
    images: int = 20,
    name: str = "profile.json",
) -> Path:
    """Write a profile in the schema of `imgflow profile --json`."""
    p99 = p99 if p99 is not None else p95
    longest = longest if longest is not None else p99
    document = {
        "version": 1,
        "created": "2026-12-04T10:00:00Z",
        "machine": {"cores": cores, "memory_bytes": memory_bytes},
        "config_sha256": "0" * 64,
        "sample": {
            "files": images,
            "images": images,
            "rejected": 0,
            "rejections": {},
            "formats": {"jpeg": images},
            "bytes": {
                "min": 1_000_000,
                "p50": 4_000_000,
                "p95": 6_000_000,
                "max": 7_000_000,
                "mean": 4_100_000.0,
            },
            "megapixels": {
                "min": megapixels,
                "p50": megapixels,
                "p95": megapixels,
                "max": megapixels,
                "mean": megapixels,
            },
            "progressive": 0,
            "animated": 0,
            "with_exif": images,
            "colour_modes": {"srgb": images},
            "bit_depths": {"8": images},
        },
        "timing": {
            "images_timed": images,
            "seconds_per_image": {
                "mean": mean,
                "p50": mean,
                "p95": p95,
                "p99": p99,
                "max": longest,
            },
            "stages": {
                "ingest": {"mean": mean * 0.05, "p50": mean * 0.05, "p95": p95 * 0.05},
                "validate": {"mean": 0.001, "p50": 0.001, "p95": 0.002},
                "transform": {"mean": mean * 0.8, "p50": mean * 0.8, "p95": p95 * 0.8},
                "metadata": {"mean": 0.001, "p50": 0.001, "p95": 0.002},
                "store": {"mean": mean * 0.1, "p50": mean * 0.1, "p95": p95 * 0.1},
            },
            "seconds_per_megapixel": mean / megapixels,
            "peak_rss_bytes": peak_rss_bytes,
        },
    }
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def recommend(tmp_path: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    """Run `imgflow recommend ARGS --json FILE`; return the result and the JSON."""
    out = tmp_path / "advice.json"
    result = CliRunner().invoke(
        main, ["recommend", *args, "--json", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text(encoding="utf-8"))


# --- Rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "unit", "per_second"),
    [
        ("50/day", 50, "day", 50 / 86400),
        ("10000/min", 10000, "min", 10000 / 60),
        ("10,000/min", 10000, "min", 10000 / 60),
        ("10_000/minute", 10000, "min", 10000 / 60),
        ("3/s", 3, "s", 3.0),
        ("0.5/sec", 0.5, "s", 0.5),
        ("1200/hour", 1200, "hour", 1200 / 3600),
        (" 2 / h ", 2, "hour", 2 / 3600),
        ("7/Days", 7, "day", 7 / 86400),
        ("1e3/s", 1000, "s", 1000.0),
        (".5/s", 0.5, "s", 0.5),
        ("+3/s", 3, "s", 3.0),
    ],
)
def test_parse_rate_accepts(
    text: str, count: float, unit: str, per_second: float
) -> None:
    """Counts with separators and unit spellings parse to the same rate."""
    rate = parse_rate(text)
    assert rate.count == count
    assert rate.unit == unit
    assert math.isclose(rate.per_second, per_second)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected COUNT/UNIT"),
        ("50", "expected COUNT/UNIT"),
        ("50/", "expected COUNT/UNIT"),
        ("/min", "expected COUNT/UNIT"),
        ("abc/min", "the count 'abc' is not a number"),
        ("1.2.3/s", "the count '1.2.3' is not a number"),
        ("50/week", "unknown unit 'week'"),
        ("50/m", "unknown unit 'm'"),
        ("0/min", "the count must be greater than 0"),
        ("0/day", "the count must be greater than 0"),
        ("-3/s", "the count must be greater than 0"),
        ("-5/min", "the count must be greater than 0"),
        ("1e-400/s", "the count must be greater than 0"),
        ("nan/s", "the count must be a finite number"),
        ("inf/min", "the count must be a finite number"),
        ("Infinity/day", "the count must be a finite number"),
        ("1e400/s", "the count must be a finite number"),
    ],
)
def test_parse_rate_rejects(text: str, expected: str) -> None:
    """A bad rate raises UsageError naming the value and showing an example."""
    with pytest.raises(UsageError) as caught:
        parse_rate(text)
    message = str(caught.value)
    assert expected in message
    assert repr(text) in message
    assert "10000/min" in message


def test_rate_keeps_text_as_written() -> None:
    """A parsed rate keeps the user's spelling for messages."""
    assert parse_rate(" 10,000/min ").as_written == "10,000/min"
    assert str(parse_rate("10,000/min")) == "10000/min"
    assert parse_rate("1e3/s") == parse_rate("1000/s")


def test_daily_rate_is_a_total() -> None:
    """Only a rate per day counts as a daily total."""
    assert parse_rate("50/day").is_daily_total
    assert not parse_rate("50/hour").is_daily_total


def test_format_rate_picks_unit() -> None:
    """Rates are written in the unit that gives a count of at least 1."""
    assert format_rate(10000 / 60) == "167/s"
    assert format_rate(50 / 3600) == "50/hour"
    assert format_rate(5 / 86400) == "5/day"


# --- Erlang C and M/M/c --------------------------------------------------------


def erlang_c_by_sum(workers: int, load: float) -> float:
    """Erlang C from its textbook form, as a second formula to compare with."""
    top = load**workers / math.factorial(workers) * workers / (workers - load)
    below = sum(load**k / math.factorial(k) for k in range(workers))
    return top / (below + top)


def test_erlang_c_call_centre_example() -> None:
    """10 Erlangs on 14 servers: P(wait) 0.1741, mean wait 7.84 s at 180 s each."""
    assert math.isclose(erlang_c(14, 10.0), 0.1741319, abs_tol=1e-7)
    estimate = mmc(arrival_rate=10 / 180, service_seconds=180, workers=14)
    assert math.isclose(estimate.mean_wait_seconds, 7.835937, rel_tol=1e-6)
    # Service level: P(wait <= 20 s) = 1 - C exp(-(c - a) t / S).
    within_20 = 1 - estimate.wait_probability * math.exp(-(14 - 10) * 20 / 180)
    assert math.isclose(within_20, 0.88835, abs_tol=1e-5)


def test_erlang_c_mm2_by_hand() -> None:
    """M/M/2 with a = 1.5: P0 = 1/7, C = 4.5/7, Wq = C / (c/S - λ)."""
    estimate = mmc(arrival_rate=2.0, service_seconds=0.75, workers=2)
    assert math.isclose(estimate.wait_probability, 4.5 / 7, rel_tol=1e-12)
    assert math.isclose(estimate.mean_wait_seconds, (4.5 / 7) / (2 / 0.75 - 2))
    assert math.isclose(estimate.utilisation, 0.75)


def test_erlang_c_mm1_equals_utilisation() -> None:
    """With one server, P(wait) is ρ and Wq is ρS / (1 - ρ)."""
    estimate = mmc(arrival_rate=0.5, service_seconds=1.0, workers=1)
    assert math.isclose(estimate.wait_probability, 0.5)
    assert math.isclose(estimate.mean_wait_seconds, 1.0)
    assert math.isclose(estimate.mean_response_seconds, 2.0)


@pytest.mark.parametrize(
    ("workers", "load"), [(1, 0.3), (2, 1.5), (5, 4.2), (14, 10.0), (40, 31.7)]
)
def test_erlang_c_matches_sum_formula(workers: int, load: float) -> None:
    """The Erlang B recursion gives the same C as the textbook sum."""
    assert math.isclose(
        erlang_c(workers, load), erlang_c_by_sum(workers, load), rel_tol=1e-10
    )


def test_erlang_c_large_pool_stays_finite() -> None:
    """Thousands of servers neither overflow nor leave [0, 1]."""
    probability = erlang_c(2000, 1900.0)
    assert 0 < probability < 1


def test_erlang_c_rejects_unstable_load() -> None:
    """A load at or above the worker count has no steady state."""
    with pytest.raises(ValueError, match="grow without bound"):
        erlang_c(4, 4.0)


def test_wait_quantile_mm1() -> None:
    """M/M/1: P(W > t) = ρ exp(-(μ - λ) t), so p95 = ln(ρ / 0.05) / (μ - λ)."""
    estimate = mmc(arrival_rate=0.5, service_seconds=1.0, workers=1)
    assert math.isclose(estimate.wait_quantile(0.95), math.log(10) / 0.5)
    assert estimate.wait_quantile(0.4) == 0.0


def test_size_pool_by_utilisation() -> None:
    """31.7 busy workers at 80% need ceil(31.7 / 0.8) = 40 workers."""
    sizing = size_pool(166.7, 0.19, 0.19, target_utilisation=0.8, budget_seconds=5.0)
    assert sizing.workers == 40
    assert sizing.bound_by == "utilisation"
    assert sizing.meets_budget


def test_size_pool_by_latency() -> None:
    """A budget just above the service time needs more workers than 80% gives."""
    by_utilisation = size_pool(
        10.0, 1.0, 1.0, target_utilisation=0.8, budget_seconds=100.0
    )
    tight = size_pool(10.0, 1.0, 1.0, target_utilisation=0.8, budget_seconds=1.01)
    assert by_utilisation.workers == 13
    assert tight.workers > by_utilisation.workers
    assert tight.bound_by == "latency"
    assert tight.latency_seconds <= 1.01


def test_size_pool_budget_below_service() -> None:
    """No worker count meets a budget shorter than the p95 service time."""
    sizing = size_pool(1.0, 1.0, 3.0, target_utilisation=0.8, budget_seconds=2.0)
    assert not sizing.meets_budget
    assert sizing.workers == 2


# --- The simulated day -----------------------------------------------------------

CONSTANT_SECOND = ServiceTimes(mean=1.0, p50=1.0, p95=1.0, max=1.0)


def test_simulation_ample_capacity_no_backlog() -> None:
    """Far more workers than the peak needs: no image waits all day."""
    pattern = ArrivalPattern(peak_rate=0.05)
    arrivals = generate_arrivals(pattern, CONSTANT_SECOND, seed=1)
    day = simulate_day(arrivals, CONSTANT_SECOND, workers=50)
    assert arrivals.method == "event"
    assert day.arrivals > 1000
    assert day.worst_backlog == 0
    assert day.worst_wait_seconds == 0.0
    assert day.end_backlog == 0


def test_simulation_too_few_workers_backlog_grows() -> None:
    """One worker for a peak of 2 images/s falls behind all afternoon."""
    pattern = ArrivalPattern(peak_rate=2.0)
    arrivals = generate_arrivals(pattern, CONSTANT_SECOND, seed=1)
    day = simulate_day(arrivals, CONSTANT_SECOND, workers=1)
    morning = day.backlog_series[10 * 60]
    afternoon = day.backlog_series[16 * 60]
    evening = day.backlog_series[20 * 60]
    assert arrivals.method == "event"
    assert morning < afternoon < evening
    assert day.end_backlog > 1000
    assert day.worst_wait_seconds > 3600


def test_simulation_fluid_for_large_days() -> None:
    """A day of millions of images runs as a fluid queue with the same behaviour."""
    pattern = ArrivalPattern(peak_rate=100.0)
    arrivals = generate_arrivals(pattern, CONSTANT_SECOND, seed=1)
    ample = simulate_day(arrivals, CONSTANT_SECOND, workers=400)
    short = simulate_day(arrivals, CONSTANT_SECOND, workers=50)
    assert arrivals.method == "fluid"
    assert ample.worst_backlog == 0
    assert short.end_backlog > 100_000
    assert short.backlog_series[12 * 60] < short.backlog_series[18 * 60]


def test_simulation_arrivals_match_pattern() -> None:
    """The simulated day brings about the expected number of images."""
    pattern = ArrivalPattern(peak_rate=1.0)
    arrivals = generate_arrivals(pattern, CONSTANT_SECOND, seed=3)
    expected = pattern.expected_arrivals()
    assert abs(arrivals.total - expected) < 0.03 * expected


def test_simulation_seeded() -> None:
    """The same seed gives the same day; another seed gives another."""
    pattern = ArrivalPattern(peak_rate=0.5)
    service = ServiceTimes(mean=1.0, p50=0.9, p95=2.0, max=4.0)
    first = generate_arrivals(pattern, service, seed=7)
    again = generate_arrivals(pattern, service, seed=7)
    other = generate_arrivals(pattern, service, seed=8)
    assert first.times == again.times
    assert first.services == again.services
    assert first.times != other.times


def test_simulation_service_spread_within_max() -> None:
    """Drawn service times centre on p50 and stay within the measured max."""
    pattern = ArrivalPattern(peak_rate=0.5)
    service = ServiceTimes(mean=1.0, p50=0.9, p95=2.0, max=4.0)
    arrivals = generate_arrivals(pattern, service, seed=7)
    ordered = sorted(arrivals.services)
    median = ordered[len(ordered) // 2]
    assert max(ordered) <= 4.0
    assert 0.8 < median < 1.0


def test_simulation_more_workers_wait_less() -> None:
    """Going from 2 to 3 to 4 workers never lengthens the worst wait."""
    pattern = ArrivalPattern(peak_rate=1.5)
    service = ServiceTimes(mean=1.0, p50=0.9, p95=2.0, max=4.0)
    arrivals = generate_arrivals(pattern, service, seed=2)
    waits = [simulate_day(arrivals, service, w).worst_wait_seconds for w in (2, 3, 4)]
    assert waits[0] >= waits[1] >= waits[2]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.004, "4 ms"),
        (0.19, "0.19 s"),
        (150, "150 s"),
        (7200, "2.0 h"),
        (86_400, "24.0 h"),
        (2 * 86_400, "2.0 days"),
        (4310.4 * 3600, "179.6 days"),
    ],
)
def test_format_seconds_units(seconds: float, text: str) -> None:
    """Durations switch to ms, hours and days at readable points."""
    assert format_seconds(seconds) == text


def test_plan_rows_call_long_waits_projected() -> None:
    """A backlog left at midnight makes the worst wait a projection, in days."""
    request = AdviceRequest(rate=parse_rate("10000/min"), budget_seconds=5, cores=8)
    advice = advise(request, ESTIMATE)
    rows = dict(report.plan_rows(advice))
    alone = rows["worst wait on one machine alone (8 workers)"]
    assert alone.endswith(", projected: the time to clear the backlog after midnight")
    assert "days" in alone or " h " in alone
    steady = rows["worst wait with 40 workers"]
    assert "projected" not in steady
    assert rows["backlog at midnight on one machine alone (8 workers)"].endswith(
        "images, growing"
    )


# --- Acceptance: the three situations -----------------------------------------


def test_small_shop_runs_sequentially(tmp_path: Path) -> None:
    """50 photos a day on one server: sequential, one worker, one machine."""
    profile = write_profile(
        tmp_path,
        mean=0.25,
        p95=0.4,
        peak_rss_bytes=150 * MB,
        cores=4,
        memory_bytes=8 * GB,
    )
    _, advice = recommend(
        tmp_path,
        "--profile",
        str(profile),
        "--rate",
        "50/day",
        "--latency-budget",
        "60",
    )
    rec = advice["recommendation"]
    assert rec["mode"] == "sequential"
    assert rec["workers"] == 1
    assert rec["machines"] == 1
    assert rec["burst_workers"] is None
    assert "--mode sequential" in rec["command"]
    assert advice["plan"]["day"]["end_backlog"] == 0
    assert not advice["costs"]["estimated"]


def test_photo_platform_needs_many_machines(tmp_path: Path) -> None:
    """10,000 uploads a minute in 5 s: dozens of workers over several machines."""
    profile = write_profile(
        tmp_path,
        mean=0.2,
        p95=0.35,
        p99=0.5,
        longest=0.8,
        peak_rss_bytes=200 * MB,
        cores=8,
        memory_bytes=16 * GB,
    )
    result, advice = recommend(
        tmp_path,
        "--profile",
        str(profile),
        "--rate",
        "10000/min",
        "--latency-budget",
        "5",
    )
    rec = advice["recommendation"]
    plan = advice["plan"]

    # Offered load 10000/60 x 0.2 s = 33.3 busy workers; at 80%, 42 workers,
    # which take 6 machines of 8.
    expected_workers = math.ceil(10000 / 60 * 0.2 / 0.8)
    assert plan["sizing"]["workers"] == expected_workers
    assert rec["mode"] == "distributed"
    assert rec["workers_per_machine"] == 8
    assert rec["machines"] == math.ceil(expected_workers / 8)
    assert rec["workers"] == rec["machines"] * 8
    assert "--workers 8" in rec["command"]
    assert math.isclose(plan["offered_load"], 10000 / 60 * 0.2)

    capacity = next(s for s in advice["steps"] if s["name"] == "capacity")
    assert "one machine is not enough" in capacity["finding"]
    assert f"{rec['machines']} machines are needed" in capacity["finding"]

    # One machine alone falls behind for the rest of the day.
    assert plan["one_machine_day"]["workers"] == 8
    assert plan["one_machine_day"]["end_backlog"] > 0
    assert "machines" in result.output
    assert "the measured p95 service time" in plan["latency_method"]


def test_scan_archive_sequential_ordered(tmp_path: Path) -> None:
    """A few hundred large ordered 16-bit scans a day: sequential, bounded."""
    profile = write_profile(
        tmp_path,
        mean=3.0,
        p95=3.6,
        p99=4.2,
        longest=4.5,
        peak_rss_bytes=800 * MB,
        cores=8,
        memory_bytes=32 * GB,
        megapixels=60.0,
    )
    _, advice = recommend(
        tmp_path,
        "--profile",
        str(profile),
        "--rate",
        "300/day",
        "--latency-budget",
        "600",
        "--ordered",
        "--memory-limit",
        "2GB",
    )
    rec = advice["recommendation"]
    assert rec["mode"] == "sequential"
    assert rec["workers"] == 1
    assert rec["ordered"]
    assert "--ordered" in rec["options"]
    assert advice["resources"]["memory_limit_bytes"] == 2 * GB
    assert advice["resources"]["workers_by_memory"] == 2
    assert any("800 MB, within the 2 GB limit" in r for r in rec["reasons"])
    ordering = next(
        s for s in advice["steps"] if s["name"] == "dependencies and ordering"
    )
    assert ordering["number"] == "strict order"


@pytest.mark.parametrize("limit", ["512MiB", "60MB", "799999999"])
def test_memory_limit_below_one_worker_exits_2(tmp_path: Path, limit: str) -> None:
    """A memory limit under one worker's peak exits 2 and prints no command."""
    profile = write_profile(
        tmp_path,
        mean=3.0,
        p95=3.6,
        peak_rss_bytes=800 * MB,
        cores=8,
        memory_bytes=32 * GB,
    )
    out = tmp_path / "advice.json"
    result = CliRunner().invoke(
        main,
        ["recommend", "--profile", str(profile), "--rate", "300/day"]
        + ["--latency-budget", "600", "--memory-limit", limit, "--json", str(out)],
        catch_exceptions=False,
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "One worker peaks at 800 MB" in text
    assert "no worker fits on a machine" in text
    assert "Raise --memory-limit to at least 800MB" in text
    assert "imgflow run" not in text
    assert not out.exists()


def test_estimate_memory_limit_below_worker_exits_2() -> None:
    """The built-in estimate's 160 MB worker does not fit in 60 MB either."""
    result = CliRunner().invoke(
        main,
        ["recommend", "--rate", "3/s", "--latency-budget", "5"]
        + ["--memory-limit", "60MB"],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "no worker fits on a machine" in text
    assert "--max-worker-rss" not in text
    assert "0 workers" not in text


def test_small_images_choose_hybrid(tmp_path: Path) -> None:
    """Small images on one machine with several workers go to hybrid."""
    profile = write_profile(
        tmp_path,
        mean=0.02,
        p95=0.04,
        peak_rss_bytes=60 * MB,
        cores=8,
        memory_bytes=16 * GB,
        megapixels=0.3,
    )
    _, advice = recommend(
        tmp_path, "--profile", str(profile), "--rate", "100/s", "--latency-budget", "2"
    )
    rec = advice["recommendation"]
    plan = advice["plan"]
    assert rec["mode"] == "hybrid"
    assert rec["machines"] == 1
    assert plan["sizing"]["workers"] == 3
    assert rec["workers"] == max(3, plan["burst_workers"] or 0)


def test_bursts_over_budget_add_workers(tmp_path: Path) -> None:
    """Bursts that break the budget with the steady count give a larger one."""
    _, advice = recommend(
        tmp_path, "--rate", "10000/min", "--latency-budget", "5", "--cores", "2"
    )
    plan = advice["plan"]
    rec = advice["recommendation"]
    assert not plan["bursts_meet_budget"]
    assert plan["day"]["worst_wait_seconds"] > 5
    assert rec["burst_workers"] > rec["workers"]
    assert plan["burst_day"]["worst_wait_seconds"] <= 5 - plan["service_p95_seconds"]


LOCAL_MODES = {"sequential", "parallel", "pipelined", "hybrid"}


@pytest.mark.parametrize(
    "args",
    [
        ("--rate", "50/day", "--latency-budget", "60"),
        ("--rate", "3/s", "--latency-budget", "5"),
        ("--rate", "3/s", "--latency-budget", "5", "--cores", "1"),
        ("--rate", "3/s", "--latency-budget", "0.5", "--cores", "2"),
        ("--rate", "3/s", "--latency-budget", "0.3", "--cores", "2"),
        ("--rate", "20/s", "--latency-budget", "2", "--cores", "4", "--ordered"),
        ("--rate", "10000/min", "--latency-budget", "5", "--cores", "8"),
    ],
)
def test_recommendation_agrees_with_command(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Model, workers, machines, headline and command describe one plan."""
    result, advice = recommend(tmp_path, *args)
    rec = advice["recommendation"]
    plan = advice["plan"]
    headline = advice["headline"]
    per_machine = rec["workers_per_machine"]
    assert rec["workers"] == rec["machines"] * per_machine
    assert rec["workers"] >= plan["sizing"]["workers"]
    assert per_machine <= advice["resources"]["workers_per_machine"]
    running_at_peak = rec["burst_workers"] or rec["workers"]
    assert running_at_peak >= (plan["burst_workers"] or 0)
    assert headline.startswith(rec["mode"])

    # The panel wraps the command and frames each line with "│".
    printed = "".join(result.output.replace("│", "").split())
    assert "".join(rec["command"].split()) in printed

    if rec["mode"] == "sequential":
        assert rec["workers"] == 1
        assert rec["burst_machines"] is None
        assert "--workers" not in rec["options"]
        assert "growing" not in headline
    if rec["mode"] in LOCAL_MODES - {"sequential"}:
        assert rec["machines"] == 1
        assert rec["burst_machines"] is None
        assert f"--mode {rec['mode']} --workers {rec['workers']} " in rec["command"]
        assert "growing" not in headline
    if rec["mode"] == "distributed":
        assert (rec["burst_machines"] or rec["machines"]) > 1
        assert f"--mode parallel --workers {per_machine} " in rec["command"]
        assert f"of {per_machine}" in headline
    if rec["burst_machines"] is not None:
        assert rec["mode"] == "distributed"
        assert rec["burst_machines"] > rec["machines"]
        assert rec["burst_workers"] == rec["burst_machines"] * per_machine
        assert f"growing to {rec['burst_machines']} machines" in headline

    text = " ".join(result.output.split())
    assert " 1 workers" not in text
    assert " 1 cores" not in text
    assert "per machine peak at" not in text
    assert "estimated p95 service time" in plan["latency_method"]
    assert "measured" not in plan["latency_method"]
    failure = next(s for s in advice["steps"] if s["name"] == "failure handling")
    assert "measured" not in failure["finding"]


def test_bursts_turn_sequential_into_pool(tmp_path: Path) -> None:
    """One steady worker whose bursts need two runs a pool of two, not sequential."""
    _, advice = recommend(tmp_path, "--rate", "3/s", "--latency-budget", "5")
    rec = advice["recommendation"]
    plan = advice["plan"]
    assert plan["sizing"]["workers"] == 1
    assert plan["burst_workers"] == 2
    assert rec["mode"] == "parallel"
    assert rec["workers"] == 2
    assert advice["headline"] == "parallel, 2 workers"


def test_bursts_beyond_one_machine_distribute(tmp_path: Path) -> None:
    """Bursts that need a second machine make the model distributed."""
    _, advice = recommend(
        tmp_path, "--rate", "3/s", "--latency-budget", "0.5", "--cores", "2"
    )
    rec = advice["recommendation"]
    plan = advice["plan"]
    assert plan["sizing"]["workers"] == 2
    assert plan["burst_workers"] == 3
    assert rec["mode"] == "distributed"
    assert rec["machines"] == 1
    assert rec["burst_machines"] == 2
    assert "--workers 2" in rec["command"]
    assert plan["one_machine_day"] is not None


# --- The command ---------------------------------------------------------------


def test_cli_without_profile_says_estimate(tmp_path: Path) -> None:
    """Without --profile the output calls the costs an estimate and shows how to measure."""
    result, advice = recommend(tmp_path, "--rate", "50/day", "--latency-budget", "60")
    text = " ".join(result.output.split())
    assert "estimate" in text
    assert "imgflow profile SAMPLE --json FILE" in text
    assert advice["costs"]["estimated"]
    assert advice["costs"]["source"] == "built-in estimate"


def test_cli_bad_rate_exits_2() -> None:
    """A rate with an unknown unit exits 2 and names the value."""
    result = CliRunner().invoke(
        main, ["recommend", "--rate", "50/week", "--latency-budget", "5"]
    )
    assert result.exit_code == 2
    assert "invalid rate '50/week'" in result.output
    assert "unknown unit" in result.output


def test_cli_missing_profile_exits_2(tmp_path: Path) -> None:
    """A profile path that does not exist exits 2 and shows how to make one."""
    missing = tmp_path / "nope.json"
    result = CliRunner().invoke(
        main,
        [
            "recommend",
            "--profile",
            str(missing),
            "--rate",
            "3/s",
            "--latency-budget",
            "5",
        ],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "not found" in text
    assert "imgflow profile SAMPLE --json FILE" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "invalid profile"),
        ('{"version": 2}', "version: expected 1"),
        ('{"version": 1, "timing": {}}', "timing.seconds_per_image: missing key"),
    ],
)
def test_cli_malformed_profile_exits_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    """A profile that is not the expected JSON exits 2 naming the problem."""
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["recommend", "--profile", str(path), "--rate", "3/s", "--latency-budget", "5"],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert expected in text


def test_read_profile_written_by_profile_module(tmp_path: Path) -> None:
    """A profile saved by `write_profile` reads back with its costs."""
    source = write_profile(
        tmp_path,
        mean=0.2,
        p95=0.3,
        p99=0.4,
        longest=0.5,
        peak_rss_bytes=120 * MB,
        cores=4,
        memory_bytes=8 * GB,
        megapixels=1.0,
    )
    saved = tmp_path / "saved.json"
    write_saved_profile(Profile.model_validate_json(source.read_text()), saved)
    costs = read_profile(saved)
    assert costs.service.mean == 0.2
    assert costs.service.p95 == 0.3
    assert costs.p99_seconds == 0.4
    assert costs.service.max == 0.5
    assert costs.peak_rss_bytes == 120 * MB
    assert costs.cores == 4
    assert costs.memory_bytes == 8 * GB
    assert costs.megapixels_p50 == 1.0
    assert costs.io_share is not None
    assert math.isclose(costs.io_share, 0.15)
    assert not costs.estimated


def test_read_profile_rejects_bad_number(tmp_path: Path) -> None:
    """A non-numeric timing value is named by its key."""
    path = write_profile(
        tmp_path, mean=0.2, p95=0.3, peak_rss_bytes=MB, cores=2, memory_bytes=GB
    )
    document = json.loads(path.read_text())
    document["timing"]["seconds_per_image"]["p95"] = "fast"
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError, match=r"seconds_per_image\.p95"):
        read_profile(path)


@pytest.mark.parametrize("rate", ["1000000/s", "1e12/s", "10,000,000/s"])
def test_cli_impossible_rate_exits_2(rate: str) -> None:
    """A rate needing more workers than the planner sizes exits 2, as written."""
    result = CliRunner().invoke(
        main, ["recommend", "--rate", rate, "--latency-budget", "5"]
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert f"--rate {rate} at" in text
    assert "more than the 100,000 this planner sizes" in text


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--latency-budget", "nan", "invalid latency budget 'nan'"),
        ("--latency-budget", "inf", "invalid latency budget 'inf'"),
        ("--latency-budget", "-Infinity", "invalid latency budget '-Infinity'"),
        ("--latency-budget", "0", "invalid latency budget '0'"),
        ("--latency-budget", "-1", "invalid latency budget '-1'"),
        ("--latency-budget", "1e308", "invalid latency budget '1e308'"),
        ("--latency-budget", "soon", "invalid latency budget 'soon'"),
        ("--utilisation", "nan", "invalid utilisation 'nan'"),
        ("--utilisation", "inf", "invalid utilisation 'inf'"),
        ("--utilisation", "1", "invalid utilisation '1'"),
        ("--utilisation", "0", "invalid utilisation '0'"),
        ("--memory-limit", "9" * 400, "the number is too large"),
        ("--memory-limit", "0", "expected more than 0 bytes"),
        ("--rate", "nan/s", "invalid rate 'nan/s'"),
    ],
)
def test_cli_bad_number_exits_2(option: str, value: str, expected: str) -> None:
    """Non-finite and out-of-range numbers exit 2 and name the value."""
    args = {"--rate": "3/s", "--latency-budget": "5", option: value}
    result = CliRunner().invoke(
        main, ["recommend", *[part for pair in args.items() for part in pair]]
    )
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("p95", math.inf, "timing.seconds_per_image.p95: Input should be a finite"),
        ("max", math.inf, "timing.seconds_per_image.max: Input should be a finite"),
        ("mean", math.nan, "timing.seconds_per_image.mean: Input should be a finite"),
        ("max", 1e308, "timing.seconds_per_image.max must be at most 86,400 s"),
        ("mean", 1e-9, "timing.seconds_per_image.mean must be at least 1e-06"),
    ],
)
def test_cli_profile_bad_seconds_exits_2(
    tmp_path: Path, key: str, value: float, expected: str
) -> None:
    """A profile with an infinite, NaN or absurd time per image exits 2."""
    path = write_profile(
        tmp_path, mean=0.2, p95=0.3, peak_rss_bytes=MB, cores=2, memory_bytes=GB
    )
    document = json.loads(path.read_text())
    document["timing"]["seconds_per_image"][key] = value
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(
        main,
        ["recommend", "--profile", str(path), "--rate", "3/s", "--latency-budget", "5"],
    )
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_bad_memory_limit_exits_2() -> None:
    """A memory limit that is not a size exits 2."""
    result = CliRunner().invoke(
        main,
        [
            "recommend",
            "--rate",
            "3/s",
            "--latency-budget",
            "5",
            "--memory-limit",
            "lots",
        ],
    )
    assert result.exit_code == 2
    assert "invalid size 'lots'" in result.output


def test_cli_html_has_backlog_chart(tmp_path: Path) -> None:
    """--html writes a page with the backlog chart and the budget line."""
    page = tmp_path / "advice.html"
    result = CliRunner().invoke(
        main,
        [
            "recommend",
            "--rate",
            "2/s",
            "--latency-budget",
            "3",
            "--cores",
            "2",
            "--html",
            str(page),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") >= 2
    assert "Images waiting for a worker" in html
    assert "latency budget 3 s" in html
    assert "Decision steps" in html


def _unwritable_targets(tmp_path: Path) -> list[tuple[Path, str]]:
    """Report paths that cannot take a file, with the reason the check gives."""
    return [
        (Path("/proc/imgflow-advice.out"), "cannot write in the folder /proc"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "advice.out", "does not exist"),
        (Path("/dev/null"), "not a regular file"),
    ]


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_cli_checks_outputs_before_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """An unwritable --json or --html path exits 2 before any planning."""

    def fail_advise(*_args, **_kwargs):
        raise AssertionError(f"planning started although {option} cannot be written")

    monkeypatch.setattr("imgflow.cli.recommend.advise", fail_advise)
    for path, reason in _unwritable_targets(tmp_path):
        result = CliRunner().invoke(
            main,
            ["recommend", "--rate", "3/s", "--latency-budget", "5", option, str(path)],
            catch_exceptions=False,
        )
        text = " ".join(result.output.split())
        assert result.exit_code == 2, (path, result.output)
        # Rich folds long paths at any character, so compare without spaces.
        assert f"{option}{path}" in "".join(result.output.split()), path
        assert reason in text, path
    assert not (tmp_path / "missing").exists()


def test_cli_failed_write_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report write that fails after the check exits 2 with the message."""

    def fail_write(path: Path, _data: bytes, option: str) -> None:
        raise UsageError(f"{option} {path}: cannot write: No space left on device")

    monkeypatch.setattr("imgflow.advisor.report.write_output_file", fail_write)
    out = tmp_path / "advice.json"
    result = CliRunner().invoke(
        main,
        ["recommend", "--rate", "3/s", "--latency-budget", "5", "--json", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "No space left on device" in " ".join(result.output.split())


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_capacity_doc_states_dicom_gap() -> None:
    """The archive example says imgflow cannot read DICOM, as validation confirms."""
    text = (DOCS / "capacity-planning.md").read_text(encoding="utf-8")
    archive = text[text.index("### A hospital archive") :]
    assert "imgflow does not read DICOM yet" in archive
    assert "16-bit greyscale TIFF" in archive
    assert "dicom.json" not in archive
    assert "DICOM images a day" not in archive

    dicom = b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\0" * 200
    with pytest.raises(ImageError) as caught:
        validate.validate(dicom, PipelineConfig().validation)
    assert caught.value.reason is Reason.FORMAT_NOT_ALLOWED
    with pytest.raises(ConfigError, match="unknown format 'dicom'"):
        parse_config({"validate": {"allowed_formats": ["dicom"]}})


def test_simulation_marks_waits_past_the_day() -> None:
    """Only a worst wait that ends after midnight is marked as projected."""
    pattern = ArrivalPattern(peak_rate=2.0)
    arrivals = generate_arrivals(pattern, CONSTANT_SECOND, seed=1)
    behind = simulate_day(arrivals, CONSTANT_SECOND, workers=1)
    ample = simulate_day(arrivals, CONSTANT_SECOND, workers=8)
    assert behind.end_backlog > 0
    assert behind.worst_wait_past_day
    assert not ample.worst_wait_past_day
    fluid_pattern = ArrivalPattern(peak_rate=100.0)
    fluid = generate_arrivals(fluid_pattern, CONSTANT_SECOND, seed=1)
    assert simulate_day(fluid, CONSTANT_SECOND, workers=50).worst_wait_past_day
    assert not simulate_day(fluid, CONSTANT_SECOND, workers=400).worst_wait_past_day
