"""Hostile inputs and environments: names, paths, locks, full disks."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pyvips
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import jpeg_bytes, quadrant_pixels
from imgflow.catalog.sqlite import SQLiteCatalog
from imgflow.cli import main
from imgflow.config import parse_config
from imgflow.errors import ConfigError, Reason, Status
from imgflow.executors import RunControl
from imgflow.outdir import locked
from imgflow.records import display_path, path_of_text
from imgflow.runner import RunRequest, collect_sources, execute

SMALL = {"variants": {"thumb": {"size": 48}, "medium": {"size": 96}}}


def _photo(path: Path, width: int = 160, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = quadrant_pixels(width + seed, 120)
    path.write_bytes(jpeg_bytes(Image.fromarray(pixels)))
    return path


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    # Rich wraps long lines; tests match words, not line breaks.
    result.text = " ".join(result.output.split())  # type: ignore[attr-defined]
    return result


def _run(inputs: Path, out: Path, config: dict = SMALL, mode: str = "sequential"):
    request = RunRequest(
        inputs=[str(inputs)], out_dir=out, config=parse_config(config), mode=mode
    )
    sources, issues = collect_sources(request)
    return execute(request, sources, issues)


def test_non_utf8_file_name_processed(tmp_path: Path) -> None:
    """A file name that is not valid UTF-8 is processed, catalogued and reported."""
    folder = tmp_path / "in"
    _photo(folder / "ok.jpg")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    with open(odd, "wb") as handle:
        handle.write(jpeg_bytes(Image.fromarray(quadrant_pixels(90, 60))))
    report = tmp_path / "report.json"
    result = _invoke("run", str(folder), "--out", str(tmp_path / "out"), "--mode",
                     "sequential", "--report", str(report), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    sources = [entry["source"] for entry in json.loads(report.read_text())["images"]]
    assert any(source.endswith("caf\\xe9.jpg") for source in sources)
    with sqlite3.connect(tmp_path / "out" / "catalog.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM images").fetchone()[0] == 2
    again = _invoke("run", str(folder), "--out", str(tmp_path / "out"),
                    "--report", str(report))  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.text
    # The re-run's report lists the finished sources it skipped, in text form.
    skipped = [entry["source"] for entry in json.loads(report.read_text())["skipped"]]
    assert any(source.endswith("caf\\xe9.jpg") for source in skipped)


def test_reported_text_of_odd_name_accepted(tmp_path: Path) -> None:
    """The report's text form of a non-UTF-8 name finds the file again."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    with open(odd, "wb") as handle:
        handle.write(jpeg_bytes(Image.fromarray(quadrant_pixels(90, 60))))
    text = display_path(os.fsdecode(odd))
    assert text.endswith("caf\\xe9.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text(text + "\n", encoding="utf-8")
    for args in ((text,), ("--files-from", str(listing))):
        out = tmp_path / f"out{len(args)}"
        result = _invoke("run", *args, "--out", str(out), "--mode", "sequential")
        assert result.exit_code == 0, result.output
        assert len(list((out / "thumb").glob("*.jpg"))) == 1


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_identical_copies_skipped_on_rerun(tmp_path: Path, mode: str) -> None:
    """Copies of one photo under one name share outputs and are all skipped later."""
    folder = tmp_path / "in"
    photo = _photo(folder / "A" / "IMG.jpg")
    for copy in ("B", "C"):
        (folder / copy).mkdir()
        (folder / copy / "IMG.jpg").write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    first = _invoke("run", str(folder), "--out", str(out), "--mode", mode, "-q")
    assert first.exit_code == 0, first.output
    (thumb,) = (out / "thumb").iterdir()
    written = thumb.stat().st_mtime_ns
    report = tmp_path / "report.json"
    for _ in range(2):
        again = _invoke("run", str(folder), "--out", str(out), "--mode", mode,
                        "--report", str(report))  # fmt: skip
        assert again.exit_code == 0, again.output
        assert json.loads(report.read_text())["images"] == []
    assert thumb.stat().st_mtime_ns == written


def test_missing_input_is_an_error(tmp_path: Path) -> None:
    """A path that does not exist makes the run fail instead of exiting 0."""
    out = tmp_path / "new" / "out"
    result = _invoke("run", str(tmp_path / "nope"), "--out", str(out))
    assert result.exit_code == 2
    assert "no images found" in result.text
    assert "input not found" in result.text
    # The output folders the check created are gone again.
    assert not (tmp_path / "new").exists()


def test_missing_input_beside_real_one_exits_one(tmp_path: Path) -> None:
    """One good input and one missing input: images run, the exit status is 1."""
    good = _photo(tmp_path / "in" / "a.jpg")
    result = _invoke("run", str(good), str(tmp_path / "nope.jpg"), "--out",
                     str(tmp_path / "out"), "--mode", "sequential")  # fmt: skip
    assert result.exit_code == 1
    assert "input not found" in result.text


def test_output_inside_input_not_read_back(tmp_path: Path) -> None:
    """Variants written inside the input folder are not inputs of the next run."""
    folder = tmp_path / "photos"
    _photo(folder / "a.jpg")
    _photo(folder / "b.jpg", seed=3)
    _run(folder, folder / "web")
    again = _run(folder, folder / "web")
    assert again.results == []
    assert len(again.skipped) == 2


def test_output_folder_under_file_exits_two(tmp_path: Path) -> None:
    """An output folder that cannot exist is a usage error, before any work."""
    _photo(tmp_path / "in" / "a.jpg")
    (tmp_path / "afile").write_bytes(b"")
    result = _invoke(
        "run", str(tmp_path / "in"), "--out", str(tmp_path / "afile" / "sub")
    )
    assert result.exit_code == 2
    assert "cannot write to the output folder" in result.text


def test_report_path_folder_exits_two(tmp_path: Path) -> None:
    """A report path that is a folder is rejected before the run starts."""
    _photo(tmp_path / "in" / "a.jpg")
    result = _invoke("run", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                     "--report", str(tmp_path))  # fmt: skip
    assert result.exit_code == 2
    assert "is a folder" in result.text
    assert not (tmp_path / "out" / "catalog.sqlite").exists()


def test_locked_output_folder_exits_two(tmp_path: Path) -> None:
    """A second run on an output folder in use gets a clear error."""
    _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    with locked(out):
        result = _invoke("run", str(tmp_path / "in"), "--out", str(out))
    assert result.exit_code == 2
    assert "in use by another imgflow run" in result.text


def test_failed_sidecar_removes_variants(tmp_path: Path) -> None:
    """When the sidecar cannot be written, the image's variants are removed."""
    photo = _photo(tmp_path / "in" / "a.jpg")
    first = tmp_path / "first"
    assert _invoke("run", str(photo), "--out", str(first), "-q").exit_code == 0
    (sidecar,) = (first / "meta").iterdir()
    # A fresh output folder whose sidecar path is taken by a folder.
    out = tmp_path / "out"
    (out / "meta" / sidecar.name).mkdir(parents=True)
    result = _invoke("run", str(photo), "--out", str(out), "-q", "--retries", "0")
    assert result.exit_code == 1, result.output
    assert list(out.glob("thumb/*")) == []
    assert list(out.glob("medium/*")) == []


def test_failed_write_removes_partial_variant_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the second variant cannot be written, the first is removed too."""
    _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    (out / "medium").mkdir(parents=True)
    (out / "medium").chmod(0o500)
    real_replace = os.replace

    def replace(source: str, target: str) -> None:
        if "/medium/" in str(target):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    summary = _run(tmp_path / "in", out)
    assert summary.results[0].reason is Reason.WRITE_FAILED
    assert list((out / "thumb").glob("*")) == []


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        # A full disk may clear while the run goes on: retried.
        (OSError(28, "No space left on device"), 3),
        # A folder in the file's place, a read-only file system: not retried.
        (IsADirectoryError(21, "Is a directory"), 1),
        (OSError(30, "Read-only file system"), 1),
    ],
)
def test_lasting_write_error_not_retried(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    attempts: int,
) -> None:
    """An output error that lasts fails the image at once and still reaches the DLQ."""
    _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"

    def replace(_source: str, _target: str) -> None:
        raise error

    monkeypatch.setattr(os, "replace", replace)
    request = RunRequest(
        inputs=[str(tmp_path / "in")],
        out_dir=out,
        config=parse_config(SMALL),
        mode="sequential",
        retry_delay=0.0,
    )
    summary = execute(request, *collect_sources(request))
    (result,) = summary.results
    assert (result.reason, result.attempts) == (Reason.WRITE_FAILED, attempts)
    monkeypatch.undo()
    listed = _invoke("dlq", "list", "--out", str(out))
    assert "a.jpg" in listed.text, listed.text


def test_catalog_failure_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog that cannot be written stops the run with a named error."""
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "b.jpg", seed=2)

    def full(*_args: object, **_kwargs: object) -> list[str]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SQLiteCatalog, "record", full)
    summary = _run(tmp_path / "in", tmp_path / "out")
    assert summary.catalog_error is not None
    assert summary.catalog_error.startswith(
        "catalog write failed: database or disk is full; check the free space"
    )
    assert not summary.all_done


def test_catalog_failure_lists_unrecorded_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images finished once the catalog failed are reported as not recorded."""
    folder = tmp_path / "in"
    for name in ("a", "b", "c"):
        _photo(folder / f"{name}.jpg", seed=ord(name))
    out = tmp_path / "out"
    real_record = SQLiteCatalog.record
    calls = []

    def fail_second(self: SQLiteCatalog, *args: object) -> list[str]:
        calls.append(args)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_record(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SQLiteCatalog, "record", fail_second)
    report = tmp_path / "report.json"
    page = tmp_path / "report.html"
    result = _invoke(
        "run", str(folder), "--out", str(out), "--mode", "sequential",
        "--report", str(report), "--html", str(page),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "1 image finished after the catalog write failed" in result.text
    assert "which the catalog lacks and the next run processes again: 1." in " ".join(
        page.read_text().split()
    )
    document = json.loads(report.read_text())
    assert document["summary"]["not_recorded"] == 1
    assert document["not_recorded"] == [str(folder / "b.jpg")]
    # Intake stopped at the failure, so c was never started.
    assert document["not_processed"] == [str(folder / "c.jpg")]
    monkeypatch.undo()

    again = _invoke("run", str(folder), "--out", str(out), "--report", str(report))
    assert again.exit_code == 0, again.output
    document = json.loads(report.read_text())
    processed = [image["source"] for image in document["images"]]
    assert processed == [str(folder / "b.jpg"), str(folder / "c.jpg")]
    assert [item["source"] for item in document["skipped"]] == [str(folder / "a.jpg")]


def test_changed_source_replaces_old_outputs(tmp_path: Path) -> None:
    """New bytes under the same name replace the old variants instead of adding."""
    photo = _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    _run(tmp_path / "in", out)
    _photo(photo, seed=9)
    os.utime(photo, ns=(1, 2))
    _run(tmp_path / "in", out)
    assert len(list((out / "thumb").glob("*"))) == 1
    assert len(list((out / "meta").glob("*"))) == 1


def test_renamed_variant_removes_old_folder_files(tmp_path: Path) -> None:
    """A variant dropped from the config loses its files on the next run."""
    _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    _run(tmp_path / "in", out)
    _run(tmp_path / "in", out, {"variants": {"small": {"size": 40}}})
    assert not (out / "thumb").exists()
    assert len(list((out / "small").glob("*"))) == 1


def test_pipelined_rejection_time_is_real(tmp_path: Path) -> None:
    """A rejection's time is measured from its own start, not from boot."""
    folder = tmp_path / "in"
    _photo(folder / "a.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    summary = _run(folder, tmp_path / "out", mode="pipelined")
    rejected = next(r for r in summary.results if r.status is Status.REJECTED)
    assert 0 <= rejected.seconds < 60


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"validate": {"max_pixels": True}}, "validate.max_pixels"),
        ({"output": {"fsync": "yes"}}, "output.fsync"),
        ({"variants": {"meta": {"size": 10}}}, "reserved for the metadata sidecars"),
        ({"output": {"keep_gps": True}}, "needs keep_exif"),
    ],
)
def test_config_rejects_loose_values(data: dict, expected: str) -> None:
    """Wrong types, reserved names and settings without effect are errors."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert expected in str(caught.value)


@pytest.mark.parametrize("mode", ["sequential", "parallel", "pipelined", "hybrid"])
def test_abandon_removes_unrecorded_outputs(mode: str, tmp_path: Path) -> None:
    """After an abandoned run, no output exists for an image the catalog lacks."""
    folder = tmp_path / "in"
    for index in range(40):
        _photo(folder / f"p{index:02}.jpg", width=400, seed=index)
    out = tmp_path / "out"
    request = RunRequest(inputs=[str(folder)], out_dir=out, config=parse_config(SMALL),
                         mode=mode, workers=2)  # fmt: skip
    sources, issues = collect_sources(request)
    control = RunControl()

    def abandon(_result: object) -> None:
        control.request_stop()
        control.request_stop()

    execute(request, sources, issues, control=control, on_result=abandon)
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        recorded = {row[0] for row in connection.execute("SELECT path FROM variants")}
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("thumb/*")}
    on_disk |= {p.relative_to(out).as_posix() for p in out.glob("medium/*")}
    assert on_disk == recorded


def test_frames_over_limit_warned(tmp_path: Path) -> None:
    """Frames dropped by max_frames are named in the image's warnings."""
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.new("RGB", (20, 20), (50 * index, 0, 0)) for index in range(5)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    config = {
        "transform": {"animation": "keep", "max_frames": 3},
        "variants": {"anim": {"size": 16, "format": "webp"}},
    }
    summary = _run(folder, tmp_path / "out", config)
    result = summary.results[0]
    assert result.status is Status.DONE
    assert any("only the first 3 are kept" in w for w in result.warnings)


def test_metadata_warnings_repeat_exactly(write_file, process) -> None:
    """Warnings carry no object address, so sidecars are the same every run."""
    # Pillow cannot open a three-band float TIFF, which libvips writes.
    image = (pyvips.Image.black(40, 30, bands=3) + 0.5).cast("float")
    path = write_file("float.tif", image.tiffsave_buffer())
    first = process(path)
    second = process(path)
    assert first.warnings
    assert first.warnings == second.warnings
    assert not any(" at 0x" in warning for warning in first.warnings)


@given(st.lists(st.binary(min_size=1, max_size=12), min_size=2, max_size=2))
def test_path_text_form_round_trip(names: list[bytes]) -> None:
    """Every file name has its own text form, which maps back to the name."""
    first, second = (os.fsdecode(name) for name in names)
    assert path_of_text(display_path(first)) == first
    if first != second:
        assert display_path(first) != display_path(second)


@pytest.mark.parametrize("damage", ["text", "cut", "page overwritten"])
def test_damaged_catalog_is_usage_error(tmp_path: Path, damage: str) -> None:
    """A catalog that SQLite cannot read stops the command with exit 2, no traceback."""
    folder = tmp_path / "in"
    _photo(folder / "a.jpg")
    out = tmp_path / "out"
    assert _invoke("run", str(folder), "--out", str(out), "-q").exit_code == 0
    catalog = out / "catalog.sqlite"
    if damage == "text":
        catalog.write_text("not a database\n")
    elif damage == "cut":
        catalog.write_bytes(catalog.read_bytes()[:5000])
    else:
        # The header stays sound, so the damage shows only when a table is read.
        data = catalog.read_bytes()
        catalog.write_bytes(data[:4096] + b"x" * 4096 + data[8192:])
    for suffix in ("-wal", "-shm"):
        (out / f"catalog.sqlite{suffix}").unlink(missing_ok=True)
    commands = [("run", str(folder)), ("dlq", "list")]
    if damage == "page overwritten":
        # The dead-letter query reads no table on the damaged page.
        commands = commands[:1]
    for command in commands:
        result = CliRunner().invoke(main, [*command, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "the catalog" in result.output
        assert "move it away" in " ".join(result.output.split())
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_catalog_write_limit_names_the_cause(tmp_path: Path) -> None:
    """A catalog that cannot be written points at space and limits, not backups."""
    folder = tmp_path / "in"
    _photo(folder / "a.jpg")

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (50 * 1024, 50 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "imgflow", "run", str(folder), "--out",
         str(tmp_path / "out"), "-q"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "file size limit" in result.stderr
    assert "backup" not in result.stderr


def test_output_replaced_by_folder_fails_image_only(tmp_path: Path) -> None:
    """A folder in place of an earlier output fails that image, and the run ends."""
    folder = tmp_path / "in"
    _photo(folder / "a.jpg")
    _photo(folder / "b.jpg")
    out = tmp_path / "out"
    assert _invoke("run", str(folder), "--out", str(out), "-q").exit_code == 0
    (variant,) = (out / "thumb").glob("a-*.jpg")
    variant.unlink()
    variant.mkdir()
    report = tmp_path / "report.json"
    result = _invoke(
        "run", str(folder), "--out", str(out), "-q", "--retries", "0",
        "--report", str(report),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    images = json.loads(report.read_text())["images"]
    assert [(image["status"], image["reason"]) for image in images] == [
        ("failed", "write_failed")
    ]
    assert variant.is_dir()


def test_foreign_catalog_named(tmp_path: Path) -> None:
    """A database with other tables in the catalog's place is named as such."""
    out = tmp_path / "out"
    out.mkdir()
    with sqlite3.connect(out / "catalog.sqlite") as connection:
        connection.execute("CREATE TABLE images (source TEXT PRIMARY KEY)")
    _photo(tmp_path / "in" / "a.jpg")
    result = _invoke("run", str(tmp_path / "in"), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "not an imgflow catalog" in result.text
    assert "free space" not in result.text


@pytest.mark.parametrize(
    "tables", ["notes (body TEXT)", "images (id INTEGER, name TEXT)"]
)
def test_foreign_database_left_unchanged(tmp_path: Path, tables: str) -> None:
    """Another program's database is refused before imgflow writes to it."""
    out = tmp_path / "out"
    out.mkdir()
    catalog = out / "catalog.sqlite"
    with sqlite3.connect(catalog) as connection:
        connection.execute(f"CREATE TABLE {tables}")
    connection.close()
    before = catalog.read_bytes()
    _photo(tmp_path / "in" / "a.jpg")
    result = _invoke("run", str(tmp_path / "in"), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "not an imgflow catalog" in result.text
    assert catalog.read_bytes() == before
    assert not (out / "catalog.sqlite-wal").exists()


def test_catalog_folder_is_usage_error(tmp_path: Path) -> None:
    """A folder where the catalog belongs stops run and dlq with exit 2."""
    out = tmp_path / "out"
    (out / "catalog.sqlite").mkdir(parents=True)
    _photo(tmp_path / "in" / "a.jpg")
    for command in (("run", str(tmp_path / "in")), ("dlq", "list")):
        result = CliRunner().invoke(main, [*command, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "is a folder, not a file" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["list", "retry", "purge"])
def test_dlq_on_catalog_failing_to_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A catalog whose tables fail to read stops dlq with exit 2, no traceback."""
    folder = tmp_path / "in"
    _photo(folder / "a.jpg")
    out = tmp_path / "out"
    assert _invoke("run", str(folder), "--out", str(out), "-q").exit_code == 0

    def malformed(*_args: object) -> list[dict]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(SQLiteCatalog, "dead_letters", malformed)
    result = CliRunner().invoke(main, ["dlq", command, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cannot be read" in " ".join(result.output.split())
