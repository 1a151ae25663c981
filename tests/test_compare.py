"""`imgflow compare`: runs per model, medians, verdicts, outputs and errors."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import imgflow_process, interrupt, jpeg_bytes, quadrant_pixels
from imgflow.advisor import compare_runs
from imgflow.advisor.compare import (
    ComparisonInterrupted,
    Measurement,
    Setup,
    make_rows,
    memory_verdict,
    plan_setups,
    round_order,
    run_rounds,
    speed_verdict,
)
from imgflow.cli import main
from imgflow.config import PipelineConfig
from imgflow.executors.base import RunControl
from imgflow.measure import Usage


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """Four small images: two baseline JPEGs, a progressive JPEG and a PNG."""
    folder = tmp_path / "sample"
    folder.mkdir()
    for index in range(2):
        image = Image.fromarray(quadrant_pixels(64 + 8 * index, 48))
        (folder / f"photo{index}.jpg").write_bytes(jpeg_bytes(image))
    progressive = Image.fromarray(quadrant_pixels(80, 60))
    (folder / "progressive.jpg").write_bytes(jpeg_bytes(progressive, progressive=True))
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 128, 255, 100)).save(buffer, "PNG")
    (folder / "alpha.png").write_bytes(buffer.getvalue())
    return folder


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that takes every temporary folder of the test."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _text(result) -> str:
    """The command's output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def _leftover_processes() -> list[str]:
    """Command lines of this process's descendants, but the resource tracker.

    multiprocessing starts one resource tracker per parent process on the
    first spawn, and it lives as long as its parent.
    """
    lines = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            if "resource_tracker" not in line:
                lines.append(line)
    return lines


def test_compare_every_mode(sample: Path, tmp_path: Path, scratch: Path) -> None:
    """Each mode gets one row with sane numbers, and the scratch output is gone."""
    json_path = tmp_path / "compare.json"
    html_path = tmp_path / "compare.html"
    result = _invoke(
        "compare",
        str(sample),
        "--modes",
        "sequential,parallel,pipelined,hybrid",
        "--workers",
        "1",
        "--json",
        str(json_path),
        "--html",
        str(html_path),
    )
    assert result.exit_code == 0, result.output

    data = json.loads(json_path.read_text())
    assert data["files"] == 4
    assert data["rounds"] == 1
    rows = data["rows"]
    assert [(row["mode"], row["workers"]) for row in rows] == [
        ("sequential", 1),
        ("parallel", 1),
        ("pipelined", 1),
        ("hybrid", 1),
    ]
    for row in rows:
        latency = row["latency_seconds"]
        assert row["images_per_second"] > 0, row["mode"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], row["mode"]
        assert row["peak_rss_bytes"] > 0, row["mode"]
        assert row["cpu_seconds"] > 0, row["mode"]
        assert 0 < row["cpu_utilisation"], row["mode"]
        assert row["workers_used"] == 1, row["mode"]
        assert len(row["runs"]) == 1, row["mode"]
        assert row["runs"][0]["counts"] == {"done": 4}, row["mode"]
        assert len(row["latencies_seconds"]) == 4, row["mode"]
        assert row["rss_series"], row["mode"]

    assert data["fastest"]
    assert data["least_memory"]
    assert len(data["verdicts"]) == 2

    assert list(scratch.iterdir()) == []
    assert _leftover_processes() == []
    assert "fastest" in _text(result).lower()
    assert "memory" in _text(result)


def test_compare_html_has_charts(sample: Path, tmp_path: Path, scratch: Path) -> None:
    """The page embeds the throughput, latency and memory charts and the table."""
    html_path = tmp_path / "compare.html"
    result = _invoke(
        "compare", str(sample), "--modes", "sequential", "--html", str(html_path)
    )
    assert result.exit_code == 0, result.output
    page = html_path.read_text()
    assert page.count("<svg") == 3
    assert "Throughput per setup" in page
    assert "Seconds per image" in page
    assert "Resident memory of the process tree" in page
    assert "<table>" in page
    assert "<th>images/s</th>" in page
    assert "4 files under 1 setup, 1 round." in page
    assert "http://" not in page.split("<svg", 1)[0]


def test_compare_rejected_image_exits_1(
    sample: Path, tmp_path: Path, scratch: Path
) -> None:
    """A sample with a rejected image still compares, then exits 1."""
    (sample / "broken.jpg").write_bytes(b"plain text")
    json_path = tmp_path / "compare.json"
    result = _invoke(
        "compare", str(sample), "--modes", "sequential", "--json", str(json_path)
    )
    assert result.exit_code == 1
    assert "did not finish" in _text(result)
    run = json.loads(json_path.read_text())["rows"][0]["runs"][0]
    assert run["counts"] == {"done": 4, "rejected": 1}
    assert list(scratch.iterdir()) == []


def test_compare_missing_input_exits_2(tmp_path: Path, scratch: Path) -> None:
    """An input that does not exist is a usage error, and nothing runs."""
    result = _invoke("compare", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "input not found" in _text(result)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--modes", "parallel,turbo", "unknown mode turbo"),
        ("--modes", "auto", "unknown mode auto"),
        ("--modes", ",", "name at least one of"),
        ("--workers", "0", "'0' is not a worker count"),
        ("--workers", "1,two", "'two' is not a worker count"),
        ("--workers", "", "'' is not a worker count"),
        ("--rounds", "0", "--rounds"),
    ],
)
def test_compare_bad_option_exits_2(
    sample: Path, option: str, value: str, message: str
) -> None:
    """Bad --modes, --workers and --rounds values are usage errors."""
    result = _invoke("compare", str(sample), option, value)
    assert result.exit_code == 2
    assert message in _text(result)


def test_plan_runs_sequential_once() -> None:
    """Sequential gets one worker; other modes get each count once."""
    setups = plan_setups(["parallel", "sequential", "hybrid"], [1, 2])
    assert setups == [
        Setup("parallel", 1),
        Setup("parallel", 2),
        Setup("sequential", 1),
        Setup("hybrid", 1),
        Setup("hybrid", 2),
    ]


def test_round_order_rotates() -> None:
    """Each round starts one setup further along."""
    setups = plan_setups(["sequential", "parallel", "hybrid"], [2])
    assert round_order(setups, 0) == setups
    assert round_order(setups, 1) == [setups[1], setups[2], setups[0]]
    assert round_order(setups, 3) == setups


def _measurement(
    setup: Setup,
    round_index: int,
    seconds: float,
    peak: int,
    counts: dict[str, int] | None = None,
) -> Measurement:
    return Measurement(
        setup=setup,
        round_index=round_index,
        workers_used=setup.workers,
        counts={"done": 10} if counts is None else counts,
        not_processed=0,
        seconds=seconds,
        latencies=[seconds / 10] * 10,
        usage=Usage(
            wall_seconds=seconds,
            cpu_seconds=seconds,
            cores=2,
            peak_rss_bytes=peak,
            rss_series=[(0.0, peak // 2), (seconds, peak)],
        ),
    )


def test_rows_report_medians() -> None:
    """Three rounds give the median throughput, latency and memory."""
    setup = Setup("parallel", 2)
    runs = [
        _measurement(setup, 0, 1.0, 300),
        _measurement(setup, 1, 4.0, 100),
        _measurement(setup, 2, 2.0, 200),
    ]
    (row,) = make_rows([setup], runs)
    assert row.images_per_second == pytest.approx(5.0)
    assert row.latency(0.5) == pytest.approx(0.2)
    assert row.peak_rss_bytes == 200
    assert row.typical is runs[2]


def test_verdict_clear_winner() -> None:
    """A lead over 5 % names the fastest and the ratio to the next."""
    fast, slow = Setup("parallel", 2), Setup("sequential", 1)
    rows = make_rows(
        [fast, slow],
        [_measurement(fast, 0, 1.0, 400), _measurement(slow, 0, 2.0, 200)],
    )
    speed = speed_verdict(rows, rounds=1)
    assert speed.leaders == [fast]
    assert "Fastest: parallel with 2 workers" in speed.sentence
    assert "2.00x as fast as the next" in speed.sentence
    memory = memory_verdict(rows, rounds=1)
    assert memory.leaders == [slow]
    assert "50% below the next" in memory.sentence


def test_verdict_within_noise() -> None:
    """Results under 5 % apart are called a tie, not a win."""
    first, second = Setup("parallel", 2), Setup("hybrid", 2)
    rows = make_rows(
        [first, second],
        [_measurement(first, 0, 1.00, 300), _measurement(second, 0, 1.03, 310)],
    )
    speed = speed_verdict(rows, rounds=1)
    assert speed.leaders == [first, second]
    assert "No clear fastest" in speed.sentence
    assert "within noise" in speed.sentence
    memory = memory_verdict(rows, rounds=1)
    assert memory.leaders == [first, second]
    assert "No clear least memory" in memory.sentence


def test_verdict_overlapping_rounds() -> None:
    """Over several rounds, medians 10 % apart whose ranges overlap are a tie."""
    first, second = Setup("parallel", 2), Setup("hybrid", 2)
    runs = [
        _measurement(first, 0, 1.0, 300),
        _measurement(first, 1, 1.0, 300),
        _measurement(first, 2, 1.5, 300),
        _measurement(second, 0, 1.1, 300),
        _measurement(second, 1, 1.1, 300),
        _measurement(second, 2, 0.9, 300),
    ]
    rows = make_rows([first, second], runs)
    assert speed_verdict(rows, rounds=3).leaders == [first, second]
    assert speed_verdict(rows, rounds=1).leaders == [first]


def test_run_rounds_interleaves_and_cleans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds rotate the order, and each run's folder is removed after it."""
    calls: list[tuple[Setup, int, Path]] = []

    def fake_measure(setup, round_index, sources, config, out_dir, inputs):
        out_dir.mkdir(parents=True)
        (out_dir / "catalog.sqlite").write_bytes(b"")
        calls.append((setup, round_index, out_dir))
        return _measurement(setup, round_index, 1.0, 100)

    monkeypatch.setattr(compare_runs, "measure", fake_measure)
    setups = plan_setups(["sequential", "parallel"], [1, 2])
    measurements = run_rounds(
        setups, [], PipelineConfig(), tmp_path, inputs=[], rounds=2
    )
    assert len(measurements) == 6
    assert [setup for setup, _, _ in calls[:3]] == setups
    assert [setup for setup, _, _ in calls[3:]] == round_order(setups, 1)
    assert [index for _, index, _ in calls] == [0, 0, 0, 1, 1, 1]
    assert len({out_dir for _, _, out_dir in calls}) == 6
    assert list(tmp_path.iterdir()) == []


def _interrupted_rounds(scratch: Path) -> ComparisonInterrupted:
    """Run sequential and parallel once each, expecting the stop to end it."""
    with pytest.raises(ComparisonInterrupted) as caught:
        run_rounds(
            plan_setups(["sequential", "parallel"], [1]),
            [],
            PipelineConfig(),
            scratch,
            inputs=[],
        )
    return caught.value


def test_run_rounds_interrupt_cleans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a run raises ComparisonInterrupted and removes its folder."""

    def interrupted_measure(setup, round_index, sources, config, out_dir, inputs):
        out_dir.mkdir(parents=True)
        (out_dir / "partial.jpg").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_runs, "measure", interrupted_measure)
    caught = _interrupted_rounds(tmp_path)
    message = str(caught)
    assert message.startswith("stopped during run 1 of 2, sequential with 1 worker.")
    assert message.endswith("That run was abandoned and its scratch output removed.")
    assert list(tmp_path.iterdir()) == []
    assert caught.measurements == []


def test_run_rounds_interrupt_keeps_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exception of a stopped comparison carries the runs that finished."""
    finished = object()

    def second_run_interrupted(setup, round_index, sources, config, out_dir, inputs):
        if setup.mode == "parallel":
            raise KeyboardInterrupt
        return finished

    monkeypatch.setattr(compare_runs, "measure", second_run_interrupted)
    caught = _interrupted_rounds(tmp_path)
    assert caught.measurements == [finished]


def _unwritable_targets(tmp_path: Path) -> list[tuple[Path, str]]:
    """Report paths that cannot take a file, with the reason the check gives."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return [
        (Path("/proc/imgflow-compare.out"), "cannot write in the folder /proc"),
        (a_file / "compare.out", f"{a_file} is not a folder"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "compare.out", "does not exist"),
        (Path("/dev/null"), "not a regular file"),
    ]


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_compare_checks_outputs_before_runs(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """An unwritable --json or --html path exits 2 before any run starts."""

    def fail_runs(*_args, **_kwargs):
        raise AssertionError(f"runs started although {option} cannot be written")

    monkeypatch.setattr("imgflow.cli.compare.run_rounds", fail_runs)
    for path, reason in _unwritable_targets(tmp_path):
        result = _invoke("compare", str(sample), option, str(path))
        assert result.exit_code == 2, (path, result.output)
        # Rich folds long paths at any character, so compare without spaces.
        assert f"{option}{path}" in "".join(result.output.split()), path
        assert reason in _text(result), path
    assert not (tmp_path / "missing").exists()


def test_verdict_without_processed_images() -> None:
    """Runs that processed no image name no fastest and no least memory."""
    fast, slow = Setup("sequential", 1), Setup("parallel", 2)
    rejected = {"rejected": 10}
    rows = make_rows(
        [fast, slow],
        [
            _measurement(fast, 0, 0.02, 60, rejected),
            _measurement(slow, 0, 0.60, 120, rejected),
        ],
    )
    speed = speed_verdict(rows, rounds=1)
    assert speed.leaders == []
    assert speed.sentence.startswith("No fastest: no run processed an image")
    assert "x as fast" not in speed.sentence
    memory = memory_verdict(rows, rounds=1)
    assert memory.leaders == []
    assert memory.sentence.startswith("No least memory: no run processed an image")


def test_verdict_one_setup_processed_none() -> None:
    """A setup that processed nothing is named, and no winner is."""
    good, idle = Setup("parallel", 2), Setup("hybrid", 2)
    rows = make_rows(
        [good, idle],
        [
            _measurement(good, 0, 1.0, 300),
            _measurement(idle, 0, 0.1, 300, {"failed": 10}),
        ],
    )
    speed = speed_verdict(rows, rounds=1)
    assert speed.leaders == []
    assert "hybrid with 2 workers processed no image" in speed.sentence
    assert memory_verdict(rows, rounds=1).leaders == []


def test_verdict_unequal_processed_counts() -> None:
    """Runs that processed different numbers of images name no winner."""
    first, second = Setup("parallel", 2), Setup("hybrid", 2)
    rows = make_rows(
        [first, second],
        [
            _measurement(first, 0, 1.0, 300),
            _measurement(first, 1, 1.0, 300, {"done": 9, "failed": 1}),
            _measurement(second, 0, 2.0, 300),
            _measurement(second, 1, 2.0, 300),
        ],
    )
    speed = speed_verdict(rows, rounds=2)
    assert speed.leaders == []
    assert "different numbers of images" in speed.sentence
    assert "parallel with 2 workers 9 to 10" in speed.sentence
    assert "hybrid with 2 workers 10" in speed.sentence


def test_compare_corrupt_sample_names_no_winner(tmp_path: Path, scratch: Path) -> None:
    """A sample of only corrupt files compares, names no winner and exits 1."""
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for index in range(3):
        (folder / f"broken{index}.jpg").write_bytes(b"plain text, not a JPEG")
    json_path = tmp_path / "compare.json"
    result = _invoke(
        "compare",
        str(folder),
        "--modes",
        "sequential,parallel",
        "--workers",
        "1",
        "--json",
        str(json_path),
    )
    text = _text(result)
    assert result.exit_code == 1
    assert "Fastest:" not in text
    assert "No fastest: no run processed an image" in text
    assert "No least memory" in text
    assert "0 of 3 images done" in text
    data = json.loads(json_path.read_text())
    assert data["fastest"] == []
    assert data["least_memory"] == []
    assert list(scratch.iterdir()) == []


def test_child_sigterm_abandons_run() -> None:
    """SIGTERM in a measuring child abandons its run and mutes run 1's log."""
    runner_log = logging.getLogger("imgflow.runner")
    level = runner_log.level
    previous = signal.getsignal(signal.SIGTERM)
    control = RunControl()
    try:
        compare_runs._abandon_on_sigterm(control)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        # The handler sets flags only, so no exception can surface in C code.
        handler(signal.SIGTERM, None)
        assert control.abandoned
        assert runner_log.level == logging.ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
        runner_log.setLevel(level)


def _measuring_children(pid: int) -> list[psutil.Process]:
    """Children of a compare process that measure a run."""
    children = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(child.cmdline()):
                children.append(child)
    return children


@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_compare_sigint_names_abandoned_setup(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    """Ctrl-C during a run names that setup, not the child's run id, and exits 130.

    It does so also when the command started with SIGINT ignored.
    """
    folder = tmp_path / "sample"
    folder.mkdir()
    photo = jpeg_bytes(Image.fromarray(quadrant_pixels(1600, 1200)))
    for index in range(12):
        (folder / f"photo{index:02d}.jpg").write_bytes(photo)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    partial = tmp_path / "partial.json"

    with imgflow_process(
        "compare", str(folder), "--modes", "sequential,parallel", "--workers", "1",
        "--json", str(partial),
        env={**os.environ, "TMPDIR": str(scratch)}, sigint_ignored=sigint_ignored,
    ) as process:  # fmt: skip
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("[1/2]"):
                break
        # Run 1's child has ended, so a new child besides the resource
        # tracker is run 2's. Waiting for it makes the stop land in run 2.
        while process.poll() is None and not _measuring_children(process.pid):
            time.sleep(0.01)
        errors = interrupt(process)

    assert process.returncode == 130, errors
    assert "stopped during run 2 of 2, parallel with 1 worker." in " ".join(
        errors.split()
    )
    assert "run 1 abandoned" not in errors
    assert "Traceback" not in errors
    assert errors.endswith("removed.\n")
    assert list(scratch.iterdir()) == []
    # The finished run is still compared, and the file marks it as partial.
    written = json.loads(partial.read_text())
    assert written["interrupted"] is True
    assert [row["mode"] for row in written["rows"]] == ["sequential"]


def test_compare_sigint_at_first_start(tmp_path: Path) -> None:
    """Ctrl-C while the first child starts leaves no traceback and exits 130.

    With 2,000 inputs the child's start data outgrows a pipe's buffer, so the
    parent is still writing it while the child's interpreter starts up.
    """
    folder = tmp_path / "sample"
    folder.mkdir()
    for index in range(2000):
        (folder / f"not-a-photo-{index:04d}.jpg").write_bytes(b"x")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    written = tmp_path / "compare.json"

    with imgflow_process(
        "compare", str(folder), "--modes", "sequential", "--json", str(written),
        env={**os.environ, "TMPDIR": str(scratch)},
    ) as process:  # fmt: skip
        errors = interrupt(process, after_line="Comparing")

    assert process.returncode == 130, errors
    assert "Traceback" not in errors
    assert list(scratch.iterdir()) == []
    assert "no --json or --html file was written" in errors
    assert not written.exists()
