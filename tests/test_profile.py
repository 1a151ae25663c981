"""`imgflow profile`: the scan, the timing, the JSON schema and the command."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import imgflow_process, interrupt, jpeg_bytes, quadrant_pixels
from imgflow.advisor import costs
from imgflow.advisor.profile import (
    ProfileError,
    ProfileInterrupted,
    ScannedImage,
    load_profile,
    scan,
    spread,
    time_images,
)
from imgflow.cli import main
from imgflow.config import PipelineConfig
from imgflow.records import Header, Source


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (30, 20), (80 * i, 40, 200 - 60 * i)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0
    )
    return buffer.getvalue()


def _camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Imgflow Test Camera"
    exif[0x0110] = "Model 1"
    return exif


@pytest.fixture
def sample(tmp_path: Path) -> dict[str, bytes]:
    """Ten files: seven images of known kinds and three that validation rejects."""
    folder = tmp_path / "sample"
    (folder / "nested").mkdir(parents=True)
    grey16 = Image.fromarray(
        (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    )
    good_png = _png(Image.new("RGBA", (50, 40), (10, 200, 30, 128)))
    files = {
        "small.jpg": jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48))),
        "medium.jpg": jpeg_bytes(
            Image.fromarray(quadrant_pixels(120, 90)), exif=_camera_exif()
        ),
        "nested/large.jpg": jpeg_bytes(Image.fromarray(quadrant_pixels(200, 150))),
        "progressive.jpg": jpeg_bytes(
            Image.fromarray(quadrant_pixels(80, 60)), progressive=True
        ),
        "alpha.png": good_png,
        "grey16.png": _png(grey16),
        "animated.gif": _animated_gif(),
        "not-an-image.jpg": b"this is plain text, not a JPEG",
        "truncated.png": good_png[: len(good_png) // 2],
        "empty.webp": b"",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _text(result) -> str:
    """The command's output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that takes every temporary folder of the test."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _profile_json(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "profile.json"
    result = _invoke("profile", str(tmp_path / "sample"), "--json", str(out), *extra)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_profile_json_has_exact_keys(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """The JSON has exactly the keys of the schema, at every level."""
    data = _profile_json(tmp_path, "--time", "3")
    assert set(data) == {
        "version",
        "created",
        "machine",
        "config_sha256",
        "sample",
        "timing",
    }
    assert set(data["machine"]) == {"cores", "memory_bytes"}
    assert set(data["sample"]) == {
        "files",
        "images",
        "rejected",
        "rejections",
        "formats",
        "bytes",
        "megapixels",
        "progressive",
        "animated",
        "with_exif",
        "colour_modes",
        "bit_depths",
    }
    distribution = {"min", "p50", "p95", "max", "mean"}
    assert set(data["sample"]["bytes"]) == distribution
    assert set(data["sample"]["megapixels"]) == distribution
    assert set(data["timing"]) == {
        "images_timed",
        "seconds_per_image",
        "stages",
        "seconds_per_megapixel",
        "peak_rss_bytes",
    }
    assert set(data["timing"]["seconds_per_image"]) == {
        "mean",
        "p50",
        "p95",
        "p99",
        "max",
    }
    for stage in data["timing"]["stages"].values():
        assert set(stage) == {"mean", "p50", "p95"}


def test_profile_counts_match_sample(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """Counts, formats and header facts match the generated files."""
    data = _profile_json(tmp_path, "--time", "3")
    facts = data["sample"]
    assert data["version"] == 1
    assert data["created"].endswith("Z")
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["memory_bytes"] > 0
    assert len(data["config_sha256"]) == 64
    assert facts["files"] == 10
    assert facts["images"] == 7
    assert facts["rejected"] == 3
    assert facts["rejections"] == {"empty_file": 1, "not_an_image": 1, "truncated": 1}
    assert facts["formats"] == {"jpeg": 4, "png": 2, "gif": 1}
    assert facts["progressive"] == 1
    assert facts["animated"] == 1
    assert facts["with_exif"] == 1
    assert facts["colour_modes"] == {"srgb": 6, "grey16": 1}
    assert facts["bit_depths"] == {"8": 6, "16": 1}


def test_profile_sizes_match_sample(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """Byte and megapixel distributions come from the accepted files."""
    data = _profile_json(tmp_path, "--time", "3")
    rejected = {"not-an-image.jpg", "truncated.png", "empty.webp"}
    sizes = sorted(len(v) for k, v in sample.items() if k not in rejected)
    summary = data["sample"]["bytes"]
    assert summary["min"] == sizes[0]
    assert summary["max"] == sizes[-1]
    assert summary["p50"] == sizes[3]  # nearest rank of 7 values
    assert summary["p95"] == sizes[-1]
    assert summary["mean"] == pytest.approx(sum(sizes) / len(sizes), abs=0.1)
    megapixels = data["sample"]["megapixels"]
    assert megapixels["min"] == pytest.approx(30 * 20 / 1e6)
    assert megapixels["max"] == pytest.approx(200 * 150 / 1e6)
    assert megapixels["min"] <= megapixels["p50"] <= megapixels["p95"]
    assert megapixels["p95"] <= megapixels["max"]


def test_profile_timing_is_sane(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """--time N times N images through every stage; numbers are positive and ordered."""
    timing = _profile_json(tmp_path, "--time", "3")["timing"]
    assert timing["images_timed"] == 3
    per_image = timing["seconds_per_image"]
    assert 0 < per_image["p50"] <= per_image["p95"] <= per_image["p99"]
    assert per_image["p99"] <= per_image["max"]
    assert set(timing["stages"]) == {
        "ingest",
        "validate",
        "transform",
        "metadata",
        "store",
    }
    for stage in timing["stages"].values():
        assert 0 <= stage["p50"] <= stage["p95"]
    assert timing["seconds_per_megapixel"] > 0
    assert timing["peak_rss_bytes"] > 0


def test_profile_removes_scratch_output(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """The timing's outputs go to a temporary folder that is gone afterwards."""
    _profile_json(tmp_path, "--time", "2")
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "sample").rglob("*")) == sorted(
        [Path(name).name for name in sample] + ["nested"]
    )


def test_profile_default_times_ten(
    sample: dict[str, bytes], tmp_path: Path, scratch: Path
) -> None:
    """Without --time every image of a sample under ten is timed."""
    data = _profile_json(tmp_path)
    assert data["timing"]["images_timed"] == 7


def test_profile_prints_tables(sample: dict[str, bytes], tmp_path: Path) -> None:
    """Without --json the tables are printed and no file is written."""
    result = _invoke("profile", str(tmp_path / "sample"), "--time", "1")
    assert result.exit_code == 0, result.output
    assert "progressive JPEG" in _text(result)
    assert "transform" in _text(result)
    assert "megapixels" in _text(result)


def test_profile_json_is_read_by_load_profile(
    sample: dict[str, bytes], tmp_path: Path
) -> None:
    """load_profile reads back what the command wrote."""
    _profile_json(tmp_path, "--time", "2")
    profile = load_profile(tmp_path / "profile.json")
    assert profile.sample.images == 7
    assert profile.timing.images_timed == 2
    assert profile.sample.bit_depths == {"8": 6, "16": 1}


def test_profile_json_is_read_by_recommend(
    sample: dict[str, bytes], tmp_path: Path
) -> None:
    """The advisor's own profile reader accepts what the command wrote."""
    _profile_json(tmp_path, "--time", "2")
    cost = costs.read_profile(tmp_path / "profile.json")
    assert cost.images_timed == 2
    assert cost.progressive == 1
    assert cost.animated == 1


def _write_profile(tmp_path: Path) -> tuple[Path, dict]:
    data = _profile_json(tmp_path, "--time", "1")
    return tmp_path / "profile.json", data


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["sample"].pop("formats"), "sample.formats: missing key"),
        (lambda d: d["timing"].update(extra=1), "timing.extra: unknown key"),
        (lambda d: d["machine"].update(cores="2"), "machine.cores"),
        (lambda d: d["sample"]["bytes"].update(p50=-1), "sample.bytes.p50"),
        (lambda d: d["sample"].update(files=99), "must equal files"),
        (lambda d: d["sample"]["formats"].update(png=5), "formats add up to"),
        (lambda d: d["sample"]["bit_depths"].update(eight=0), "sample.bit_depths"),
        (lambda d: d.update(created="2026-01-01T00:00:00+02:00"), "created"),
        (lambda d: d.update(config_sha256="abc"), "config_sha256"),
        (
            lambda d: d["timing"]["seconds_per_image"].update(p95=float("inf")),
            "timing.seconds_per_image.p95: Input should be a finite number",
        ),
        (
            lambda d: d["sample"]["megapixels"].update(mean=float("nan")),
            "sample.megapixels.mean: Input should be a finite number",
        ),
    ],
)
def test_load_profile_names_bad_key(
    sample: dict[str, bytes], tmp_path: Path, change, named: str
) -> None:
    """A profile that breaks the schema is rejected with the file and key named."""
    path, data = _write_profile(tmp_path)
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(path) in str(caught.value)
    assert named in str(caught.value)


def test_load_profile_rejects_other_version(tmp_path: Path) -> None:
    """A profile of another schema version is rejected before its keys are read."""
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"version": 2}))
    with pytest.raises(ProfileError, match="version: expected 1, got 2"):
        load_profile(path)


def test_load_profile_rejects_bad_json(tmp_path: Path) -> None:
    """Text that is not JSON, and a missing file, give a ProfileError."""
    path = tmp_path / "profile.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(path)
    with pytest.raises(ProfileError, match="file not found"):
        load_profile(tmp_path / "missing.json")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path)


def _scanned(pixels: int) -> ScannedImage:
    header = Header(
        format="jpeg",
        width=pixels,
        height=1,
        bands=3,
        bit_depth=8,
        pages=1,
        orientation=1,
        progressive=False,
    )
    return ScannedImage(Source(0, f"{pixels}.jpg"), header, pixels, False)


def test_spread_covers_size_range() -> None:
    """Picks run from the smallest to the largest image, evenly spaced."""
    images = [_scanned(pixels) for pixels in (70, 10, 40, 30, 20, 60, 50)]
    picked = [image.header.pixels for image in spread(images, 3)]
    assert picked == [10, 40, 70]
    assert [i.header.pixels for i in spread(images, 1)] == [40]
    assert len(spread(images, 10)) == 7
    assert len({id(i) for i in spread(images, 6)}) == 6


def test_profile_missing_input_exits_2(tmp_path: Path) -> None:
    """An input that does not exist is a usage error."""
    result = _invoke("profile", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "no images found" in _text(result)
    assert "input not found" in _text(result)


def test_profile_without_input_exits_2() -> None:
    """Naming no input is a usage error."""
    result = _invoke("profile")
    assert result.exit_code == 2
    assert "no input given" in _text(result)


def test_profile_all_rejected_exits_1(tmp_path: Path) -> None:
    """A sample where nothing passes validation has nothing to profile."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"plain text")
    out = tmp_path / "profile.json"
    result = _invoke("profile", str(folder), "--json", str(out))
    assert result.exit_code == 1
    assert "no file passed validation (1 file scanned: 1 not_an_image)" in _text(result)
    assert not out.exists()


def test_profile_bad_options_exit_2(sample: dict[str, bytes], tmp_path: Path) -> None:
    """--time 0, a --json folder and a missing --config are usage errors."""
    folder = str(tmp_path / "sample")
    assert _invoke("profile", folder, "--time", "0").exit_code == 2
    result = _invoke("profile", folder, "--json", str(tmp_path))
    assert result.exit_code == 2
    assert "is a folder" in _text(result)
    result = _invoke("profile", folder, "--config", str(tmp_path / "none.toml"))
    assert result.exit_code == 2
    assert "config file not found" in _text(result)


def _unwritable_targets(tmp_path: Path) -> list[tuple[Path, str]]:
    """Report paths that cannot take a file, with the reason the check gives."""
    return [
        (Path("/proc/imgflow-profile.json"), "cannot write in the folder /proc"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "profile.json", "does not exist"),
        (Path("/dev/null"), "not a regular file"),
    ]


def test_profile_checks_json_before_scanning(
    sample: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unwritable --json path exits 2 before any file is scanned."""

    def fail_scan(*_args, **_kwargs):
        raise AssertionError("the scan started although --json cannot be written")

    monkeypatch.setattr("imgflow.cli.profile.scan", fail_scan)
    for path, reason in _unwritable_targets(tmp_path):
        result = _invoke("profile", str(tmp_path / "sample"), "--json", str(path))
        assert result.exit_code == 2, (path, result.output)
        # Rich folds long paths at any character, so compare without spaces.
        assert f"--json{path}" in "".join(result.output.split()), path
        assert reason in _text(result), path
    assert not (tmp_path / "missing").exists()


def test_scan_stops_when_requested(sample: dict[str, bytes], tmp_path: Path) -> None:
    """A stop request set before the scan ends it before the first file."""
    stop = threading.Event()
    stop.set()
    sources = [
        Source(index, str(path))
        for index, path in enumerate(sorted((tmp_path / "sample").rglob("*.jpg")))
    ]
    with pytest.raises(ProfileInterrupted, match="after 0 files"):
        scan(sources, PipelineConfig(), stop)


def test_timing_stops_between_images(sample: dict[str, bytes], tmp_path: Path) -> None:
    """A stop request set during the timing ends it before the next image."""
    sources = [
        Source(index, str(path))
        for index, path in enumerate(sorted((tmp_path / "sample").rglob("*.jpg")))
    ]
    images = scan(sources, PipelineConfig()).images
    out_dir = tmp_path / "out"
    stop = threading.Event()
    stop.set()
    with pytest.raises(ProfileInterrupted, match="after 0 of 4 images"):
        time_images(images, PipelineConfig(), out_dir, stop)
    assert not out_dir.exists() or not any(out_dir.rglob("*.jpg"))


def test_profile_sigint_stops_and_cleans(tmp_path: Path) -> None:
    """SIGINT during the timing ends a real profile with 130 and no leftovers."""
    folder = tmp_path / "sample"
    folder.mkdir()
    photo = jpeg_bytes(Image.fromarray(quadrant_pixels(2400, 1800)))
    for index in range(30):
        (folder / f"photo{index:02d}.jpg").write_bytes(photo)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "profile.json"
    with imgflow_process(
        "profile", str(folder), "--time", "30", "--json", str(out),
        env={**os.environ, "TMPDIR": str(scratch)},
    ) as process:  # fmt: skip
        # The command prints this line just before it starts the timing.
        errors = interrupt(process, after_line="timing 30 images")

    assert process.returncode == 130, errors
    assert "stopped during the timing" in errors
    assert "Exception ignored" not in errors
    assert "Traceback" not in errors
    assert not out.exists()
    assert list(scratch.iterdir()) == []


def test_profile_one_unfinished_image_wording(tmp_path: Path) -> None:
    """One timed image that fails to decode is reported in the singular."""
    folder = tmp_path / "sample"
    folder.mkdir()
    whole = jpeg_bytes(Image.fromarray(quadrant_pixels(200, 150)))
    (folder / "whole.jpg").write_bytes(whole)
    (folder / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    result = _invoke("profile", str(folder), "--time", "2")
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "1 timed image did not finish the pipeline and is left out" in text
    assert "cut.jpg" in text
