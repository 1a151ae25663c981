"""The `imgflow` command: exit codes, report, configuration errors."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import imgflow_process, interrupt, jpeg_bytes, quadrant_pixels
from imgflow.cli import main
from imgflow.config import PipelineConfig, load_config
from imgflow.executors.parallel import default_workers


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        image = Image.fromarray(quadrant_pixels(300 + index, 200))
        (folder / f"p{index}.jpg").write_bytes(jpeg_bytes(image))
    return folder


def _invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_run_all_done_exits_zero(photos: Path, tmp_path: Path) -> None:
    """A run where every image is processed exits 0 and writes the report."""
    report = tmp_path / "report.json"
    result = _invoke(
        "run",
        str(photos),
        "--out",
        str(tmp_path / "out"),
        "--mode",
        "sequential",
        "--report",
        str(report),
        "-q",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["summary"]["done"] == 3
    assert data["summary"]["images"] == 3
    first = data["images"][0]
    assert first["status"] == "done"
    assert first["reason"] is None
    assert set(first["variants"]) == {"thumb", "medium", "large"}
    assert first["variants"]["thumb"]["width"] == 256
    assert (tmp_path / "out" / first["variants"]["thumb"]["path"]).is_file()


def test_run_with_rejection_exits_one(photos: Path, tmp_path: Path) -> None:
    """A rejected image makes the exit status 1 and is named in the report."""
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    report = tmp_path / "report.json"
    result = _invoke(
        "run",
        str(photos),
        "--out",
        str(tmp_path / "out"),
        "--mode",
        "sequential",
        "--report",
        str(report),
    )
    assert result.exit_code == 1
    assert "not_an_image" in result.output
    entries = {
        Path(e["source"]).name: e for e in json.loads(report.read_text())["images"]
    }
    assert entries["broken.jpg"]["status"] == "rejected"
    assert entries["broken.jpg"]["reason"] == "not_an_image"
    assert entries["p0.jpg"]["status"] == "done"


def test_run_summary_table_printed(photos: Path, tmp_path: Path) -> None:
    """Without --quiet the summary table shows counts and rates."""
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--mode", "sequential"
    )
    assert result.exit_code == 0
    assert "images/s" in result.output
    assert "p95" in result.output


def test_invalid_config_exits_two(photos: Path, tmp_path: Path) -> None:
    """A bad config value exits 2 with the key and the expected value."""
    config = tmp_path / "bad.toml"
    config.write_text("[variants.thumb]\nsize = 256\nfit = 'sideways'\n")
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--config", str(config)
    )
    assert result.exit_code == 2
    assert "variants.thumb.fit" in result.output
    assert "sideways" in result.output


def test_unknown_config_key_exits_two(photos: Path, tmp_path: Path) -> None:
    """A misspelt setting is named instead of being ignored."""
    config = tmp_path / "bad.toml"
    config.write_text("[validate]\nmax_pixel = 5\n")
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--config", str(config)
    )
    assert result.exit_code == 2
    assert "validate.max_pixel" in result.output
    assert "unknown setting" in result.output


def test_missing_input_exits_two(tmp_path: Path) -> None:
    """No input at all is a usage error."""
    result = _invoke("run", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no input" in result.output


def test_bad_mode_exits_two(photos: Path, tmp_path: Path) -> None:
    """An unknown --mode is rejected by the option parser."""
    result = CliRunner().invoke(
        main, ["run", str(photos), "--out", str(tmp_path), "--mode", "x"]
    )
    assert result.exit_code == 2


def test_stdin_list_of_paths(photos: Path, tmp_path: Path) -> None:
    """'-' reads the paths to process from stdin."""
    listing = "\n".join(str(p) for p in sorted(photos.glob("*.jpg"))[:2]) + "\n"
    report = tmp_path / "r.json"
    result = _invoke(
        "run",
        "-",
        "--out",
        str(tmp_path / "out"),
        "--mode",
        "sequential",
        "--report",
        str(report),
        "-q",
        input=listing,
    )
    assert result.exit_code == 0
    assert json.loads(report.read_text())["summary"]["images"] == 2


def test_init_writes_loadable_defaults(tmp_path: Path) -> None:
    """The starter config parses and equals the built-in defaults."""
    path = tmp_path / "imgflow.toml"
    result = _invoke("init", str(path))
    assert result.exit_code == 0
    tomllib.loads(path.read_text())
    assert load_config(path) == PipelineConfig()


def test_init_keeps_existing_file(tmp_path: Path) -> None:
    """init does not overwrite a file unless --force is given."""
    path = tmp_path / "imgflow.toml"
    path.write_text("# mine\n")
    result = _invoke("init", str(path))
    assert result.exit_code == 2
    assert path.read_text() == "# mine\n"


def test_report_to_fifo_or_device_rejected(tmp_path: Path) -> None:
    """A report path that is not a regular file is never replaced."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (32, 24), "red")))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        for option in ("--report", "--html"):
            result = CliRunner().invoke(
                main,
                [
                    "run",
                    str(inputs),
                    "--out",
                    str(tmp_path / "out"),
                    option,
                    str(target),
                ],
            )
            assert result.exit_code == 2, result.output
            assert "not a regular file" in " ".join(result.output.split())
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert not (tmp_path / "out" / "catalog.sqlite").exists()


def test_report_through_symlink_keeps_link(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (32, 24), "red")))
    target = tmp_path / "reports" / "latest.json"
    target.parent.mkdir()
    link = tmp_path / "report.json"
    link.symlink_to(target)
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(inputs),
            "--out",
            str(tmp_path / "out"),
            "--report",
            str(link),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert json.loads(target.read_text())["summary"]["done"] == 1


def test_report_in_unwritable_folder_rejected_first(tmp_path: Path) -> None:
    """The report folder is checked before any image is processed."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.jpg").write_bytes(jpeg_bytes(Image.new("RGB", (32, 24), "red")))
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(inputs),
            "--out",
            str(tmp_path / "out"),
            "--html",
            "/proc/report.html",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "cannot write in the folder /proc" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "catalog.sqlite").exists()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="workers are forked only on Linux"
)
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_run_forks_workers_before_threads(
    photos: Path, tmp_path: Path, log_format: str
) -> None:
    """The command forks its pool's workers before the progress bar's thread.

    Forked workers skip the interpreter start and imports a spawned one
    pays. A fresh process is needed: the test runner's own threads would
    rule forking out. Text logs come with the progress bar.
    """
    command = [sys.executable, "-m", "imgflow", "run", str(photos)]
    command += ["--out", str(tmp_path / "out"), "--mode", "parallel"]
    command += ["--workers", "2", "-vv", "--log-format", log_format]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert completed.returncode == 0, completed.stderr
    assert "forked 2 workers ahead of their pool" in completed.stderr


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the wait from /proc"
)
def test_run_interrupted_while_listing(tmp_path: Path) -> None:
    """Ctrl-C before the first image starts exits 130 with a short message.

    The list of inputs comes from a FIFO with no writer, so the command is
    still reading it when the signal arrives.
    """
    fifo = tmp_path / "inputs.fifo"
    os.mkfifo(fifo)
    with imgflow_process(
        "run", "--files-from", str(fifo), "--out", str(tmp_path / "out")
    ) as process:
        deadline = time.monotonic() + 30
        # Linux names the wait of an open() on a FIFO that has no writer.
        wchan = Path(f"/proc/{process.pid}/wchan")
        while time.monotonic() < deadline and wchan.read_text() != "wait_for_partner":
            time.sleep(0.05)
        errors = interrupt(process)

    assert process.returncode == 130, errors
    assert "interrupted" in errors
    assert "Traceback" not in errors
    assert "Aborted" not in errors


@pytest.mark.parametrize(
    "target",
    [
        "catalog.sqlite",
        "catalog.sqlite-wal",
        ".imgflow.lock",
        "meta/x.json",
        "thumb/x.jpg",
    ],
)
def test_report_cannot_replace_managed_file(
    photos: Path, tmp_path: Path, target: str
) -> None:
    """A report path on a file imgflow keeps in the output folder exits 2."""
    out = tmp_path / "out"
    assert _invoke("run", str(photos), "--out", str(out), "-q").exit_code == 0
    catalog = (out / "catalog.sqlite").read_bytes()
    for option in ("--report", "--html"):
        result = _invoke(
            "run", str(photos), "--out", str(out), option, str(out / target), "-q"
        )
        assert result.exit_code == 2, result.output
        assert "imgflow keeps" in result.output
    assert (out / "catalog.sqlite").read_bytes() == catalog


@pytest.mark.parametrize(
    ("option", "is_input", "message"),
    [
        ("--report", True, "would replace the input image"),
        ("--html", False, "would replace an image"),
    ],
)
def test_report_cannot_replace_image(
    photos: Path, tmp_path: Path, option: str, is_input: bool, message: str
) -> None:
    """A report path naming an image, an input or not, is rejected."""
    target = photos / "p0.jpg"
    if not is_input:
        target = tmp_path / "other.jpg"
        target.write_bytes((photos / "p0.jpg").read_bytes())
    before = target.read_bytes()
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), option, str(target)
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert target.read_bytes() == before


def test_report_among_inputs_reruns(tmp_path: Path) -> None:
    """A report written into the input folder is no input of the next run."""
    photo = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    for option, name in (("--report", "r.json"), ("--html", "r.html")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.jpg").write_bytes(photo)
        args = ["run", str(folder), "--out", str(tmp_path / f"out-{name}"), option]
        for _ in range(2):
            result = _invoke(*args, str(folder / name), "--redo", "-q")
            assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json" / "r.json").read_text())
    sources = [image["source"] for image in report["images"]]
    assert sources == [str(tmp_path / "r.json" / "a.jpg")]


def test_filters_passing_nothing_exit_2(photos: Path, tmp_path: Path) -> None:
    """Patterns that leave out every file are a usage error, not an empty run."""
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--include", "["
    )
    assert result.exit_code == 2, result.output
    assert "no input file passes --include '['" in " ".join(result.output.split())


def test_input_inside_output_folder_exits_2(photos: Path) -> None:
    """An --out that contains an input would skip it, so the run refuses."""
    result = _invoke("run", str(photos), "--out", str(photos))
    assert result.exit_code == 2, result.output
    assert "inside the output folder" in result.output


def test_stdin_named_twice_exits_2(tmp_path: Path) -> None:
    result = _invoke("run", "-", "-", "--out", str(tmp_path / "out"), input="x.jpg\n")
    assert result.exit_code == 2, result.output
    assert "standard input" in result.output


@pytest.mark.parametrize(
    "option",
    [["--retry-delay", "nan"], ["--retry-delay", "1e308"], ["--time-limit", "inf"]],
)
def test_run_rejects_non_finite_seconds(
    photos: Path, tmp_path: Path, option: list[str]
) -> None:
    result = _invoke("run", str(photos), "--out", str(tmp_path / "out"), *option)
    assert result.exit_code == 2, result.output


def test_problem_table_escapes_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file name with an escape sequence or markup is shown, not obeyed."""
    # Wide enough that the name is not folded across lines. Rich reads the
    # width from COLUMNS when the output is not a terminal.
    monkeypatch.setenv("COLUMNS", "500")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "esc\x1b[31mred[bold].jpg").write_bytes(b"not an image")
    result = _invoke("run", str(folder), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "\x1b[31m" not in result.output
    assert "esc\\x1b[31mred[bold].jpg" in result.output


def test_report_and_html_same_file_exits_2(photos: Path, tmp_path: Path) -> None:
    same = tmp_path / "r.json"
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"),
        "--report", str(same), "--html", str(same),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "same file" in result.output


def test_run_rejects_huge_retry_count(photos: Path, tmp_path: Path) -> None:
    """The backoff doubles per attempt, so the count is bounded."""
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--retries", "1100"
    )
    assert result.exit_code == 2, result.output


def test_run_rejects_huge_worker_count(photos: Path, tmp_path: Path) -> None:
    """Thousands of worker processes would exhaust memory, so the count is bounded."""
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--workers", "100000"
    )
    assert result.exit_code == 2, result.output
    assert "1<=x<=512" in result.output


def test_run_warns_oversubscribed_workers(photos: Path, tmp_path: Path) -> None:
    """More than four workers per core run, with a warning."""
    workers = 4 * default_workers() + 1
    result = _invoke(
        "run", str(photos), "--out", str(tmp_path / "out"), "--mode", "sequential",
        "--workers", str(workers),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"--workers {workers} on {default_workers()} cores" in output


def test_stop_signals_ignored_while_exiting(tmp_path: Path) -> None:
    """A signal while the finished command exits does not change its status."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48))))
    # Exit handlers run last first, so this one reads the state the command left.
    script = (
        "import atexit, signal, sys\n"
        "atexit.register(lambda: print(signal.getsignal(signal.SIGINT).name,"
        " signal.getsignal(signal.SIGTERM).name))\n"
        "from imgflow.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "run", str(photo), "--out",
         str(tmp_path / "out"), "--mode", "sequential", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SIG_IGN", "SIG_IGN"]


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_abandons_and_reports(
    tmp_path: Path, mode: str, signum: signal.Signals
) -> None:
    """Two signals abandon the run; it still exits 1 and writes its report."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = jpeg_bytes(Image.fromarray(quadrant_pixels(3000, 2000)))
    for index in range(30):
        (folder / f"photo{index:02d}.jpg").write_bytes(photo)
    config = tmp_path / "slow.toml"
    # A large WebP variant makes each image slow enough for both signals.
    config.write_text('[variants.web]\nsize = 2400\nformat = "webp"\n')
    report = tmp_path / "report.json"
    with imgflow_process(
        "run", str(folder), "--out", str(tmp_path / "out"), "--config", str(config),
        "--mode", mode, "--workers", "2", "--report", str(report), "--log-format",
        "json", "-v",
    ) as process:  # fmt: skip
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if '"event": "image"' in line:
                process.send_signal(signum)
            if "finishing the images in progress" in line:
                process.send_signal(signum)
                break
        errors = "".join(seen) + process.stderr.read()
        process.wait(timeout=120)

    assert process.returncode == 1, errors
    assert "Traceback" not in errors
    assert "abandoning the images in progress" in errors
    # The stop messages are JSON records too, so the stream stays parseable.
    records = [json.loads(line) for line in errors.splitlines() if line.strip()]
    assert sum(r.get("event") == "stop_requested" for r in records) == 2
    summary = json.loads(report.read_text())["summary"]
    assert summary["not_processed"] > 0
    assert summary["done"] + summary["not_processed"] == 30


def test_json_logs_print_no_table(photos: Path, tmp_path: Path) -> None:
    """With JSON logs, stdout and stderr both hold JSON records only."""
    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(photos), "--out",
         str(tmp_path / "out"), "--log-format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    records = [
        json.loads(line) for line in (result.stdout + result.stderr).splitlines()
    ]
    # Without -v too, each image and the run's counts have their records.
    events = [record.get("event") for record in records]
    assert events.count("image") == len(list(photos.iterdir()))
    assert events[-1] == "run_finished"
    assert "done" in records[-1]
    assert records[-1]["not_read"] == 0


def test_json_logs_name_unread_inputs(photos: Path, tmp_path: Path) -> None:
    """An input that cannot be read has its own record and its count at the end."""
    missing = tmp_path / "missing.jpg"
    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(photos), str(missing), "--out",
         str(tmp_path / "out"), "--log-format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    unread = [r for r in records if r.get("event") == "input_not_read"]
    assert [r["source"] for r in unread] == [str(missing)]
    assert records[-1]["event"] == "run_finished"
    assert records[-1]["not_read"] == 1


def test_summary_lists_unprocessed_inputs(tmp_path: Path) -> None:
    """After a stop, the summary names the inputs left and how to finish them."""
    from rich.console import Console

    from imgflow.cli import run as run_command
    from imgflow.records import Source
    from imgflow.runner import RunSummary

    left = [Source(index, f"/photos/left{index}.jpg") for index in range(3)]
    summary = RunSummary(
        mode="parallel", workers=2, results=[], issues=[], seconds=1.0,
        not_processed=left,
    )  # fmt: skip
    console = Console(record=True, width=200)
    table = run_command._problems_table(summary)
    assert table is not None
    console.print(table)
    text = console.export_text()
    for source in left:
        assert source.path in text
    assert "not processed" in text
