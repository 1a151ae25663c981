"""Tests for the sample photo generator, on small (0.3 MP) photos."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("skimage")

from click.testing import CliRunner  # noqa: E402
from PIL import ExifTags, Image, ImageChops, ImageOps, ImageStat  # noqa: E402

from imgflow import samples  # noqa: E402
from imgflow.cli import main  # noqa: E402
from imgflow.config import ValidateConfig  # noqa: E402

MEGAPIXELS = 0.3
WIDTH, HEIGHT = 640, 480
COUNT = 8  # photos 4, 5, 7 and 8 carry Orientation 6, 8, 3 and 6


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out_dir = tmp_path_factory.mktemp("samples")
    return samples.generate(out_dir, COUNT, megapixels=MEGAPIXELS, seed=7)


def start_of_frame_marker(data: bytes) -> int:
    """Walk the JPEG segments and return the first SOFn marker byte (0xC0-0xCF)."""
    assert data[:2] == b"\xff\xd8", "missing SOI marker"
    offset = 2
    while offset + 4 <= len(data):
        assert data[offset] == 0xFF, f"no marker at offset {offset}"
        marker = data[offset + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 2 + length
    raise AssertionError("no SOF marker before the end of the file")


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first.convert("L"), second.convert("L"))
    return ImageStat.Stat(difference).mean[0]


def test_frame_size_for_common_megapixels() -> None:
    assert samples.frame_size(12) == (4000, 3000)
    assert samples.frame_size(0.3) == (640, 480)
    assert samples.frame_size(0.0001) == (32, 24)


def test_largest_frame_within_pixel_limit() -> None:
    """The largest size the command accepts still passes a default run."""
    width, height = samples.frame_size(100)
    assert (width, height) == (11520, 8640)
    assert width * height <= ValidateConfig().max_pixels


def test_samples_command_keeps_existing_photo(tmp_path: Path) -> None:
    """A camera photo named like a sample stops the command, unless --force."""
    photo = tmp_path / "IMG_0002.jpg"
    photo.write_bytes(b"a camera photo")
    args = ["samples", str(tmp_path), "--count", "2", "--megapixels", "0.01"]
    stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 2, stopped.output
    assert "IMG_0002.jpg exists" in stopped.output
    assert "--force" in stopped.output
    assert photo.read_bytes() == b"a camera photo"
    assert not (tmp_path / "IMG_0001.jpg").exists()
    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert photo.read_bytes()[:2] == b"\xff\xd8"


def test_samples_failed_write_leaves_no_partial(tmp_path: Path) -> None:
    """A name taken by a folder stops the command and leaves no partial file."""
    (tmp_path / "IMG_0002.jpg").mkdir()
    args = ["samples", str(tmp_path), "--count", "3", "--megapixels", "0.01"]
    result = CliRunner().invoke(main, [*args, "--force"])
    assert result.exit_code == 2, result.output
    assert "IMG_0002.jpg" in " ".join(result.output.split())
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize("megapixels", [0, -1, math.nan, math.inf])
def test_frame_size_rejects_invalid(megapixels: float) -> None:
    with pytest.raises(ValueError, match="megapixels"):
        samples.frame_size(megapixels)


def test_generate_rejects_negative_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count"):
        samples.generate(tmp_path, -1)


def test_generate_zero_count(tmp_path: Path) -> None:
    out_dir = tmp_path / "none"
    assert samples.generate(out_dir, 0) == []
    assert out_dir.is_dir()


def test_generate_writes_count_in_order(photos: list[Path]) -> None:
    assert len(photos) == COUNT
    assert [path.name for path in photos] == [
        f"IMG_{number:04d}.jpg" for number in range(1, COUNT + 1)
    ]
    for path in photos:
        assert path.is_file()


def test_generate_leaves_only_jpegs(photos: list[Path]) -> None:
    names = sorted(path.name for path in photos[0].parent.iterdir())
    assert names == [path.name for path in photos]


def test_orientation_tags(photos: list[Path]) -> None:
    found = []
    for path in photos:
        with Image.open(path) as image:
            found.append(image.getexif().get(ExifTags.Base.Orientation))
    assert found == [1, 1, 1, 6, 8, 1, 3, 6]
    assert found == [samples.orientation_for(n) for n in range(1, COUNT + 1)]


def test_stored_and_displayed_sizes(photos: list[Path]) -> None:
    for path in photos:
        with Image.open(path) as image:
            orientation = image.getexif()[ExifTags.Base.Orientation]
            stored = image.size
            displayed = ImageOps.exif_transpose(image).size
        if orientation in (6, 8):
            assert stored == (HEIGHT, WIDTH), path.name
        else:
            assert stored == (WIDTH, HEIGHT), path.name
        assert displayed == (WIDTH, HEIGHT), path.name


@pytest.mark.parametrize("number", [1, 4, 5, 7])
def test_photo_displays_upright(photos: list[Path], number: int) -> None:
    """After exif_transpose the photo matches the upright scene, not a turned one."""
    scene = samples.render_scene(number, WIDTH, HEIGHT, seed=7)
    with Image.open(photos[number - 1]) as image:
        displayed = ImageOps.exif_transpose(image)
    upright_error = mean_difference(displayed, scene)
    # Grain and JPEG coding leave a few levels of difference on the right scene.
    assert upright_error < 8
    turned = scene.transpose(Image.Transpose.ROTATE_180)
    assert mean_difference(displayed, turned) > 2 * upright_error


def test_camera_exif_fields(photos: list[Path]) -> None:
    for path in photos:
        with Image.open(path) as image:
            exif = image.getexif()
        details = exif.get_ifd(ExifTags.IFD.Exif)
        assert exif[ExifTags.Base.Make], path.name
        assert exif[ExifTags.Base.Model], path.name
        assert details[ExifTags.Base.LensModel], path.name
        date = details[ExifTags.Base.DateTimeOriginal]
        assert re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d", date), date
        assert 0 < float(details[ExifTags.Base.ExposureTime]) <= 1, path.name
        assert 1.0 <= float(details[ExifTags.Base.FNumber]) <= 22, path.name
        assert details[ExifTags.Base.ISOSpeedRatings] in (
            100,
            200,
            400,
            800,
            1600,
            3200,
            6400,
        )
        assert float(details[ExifTags.Base.FocalLength]) > 0, path.name


def test_capture_times_increase(photos: list[Path]) -> None:
    dates = []
    for path in photos:
        with Image.open(path) as image:
            details = image.getexif().get_ifd(ExifTags.IFD.Exif)
        dates.append(details[ExifTags.Base.DateTimeOriginal])
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)


def test_gps_on_some_photos_only(photos: list[Path]) -> None:
    with_gps = []
    for number, path in enumerate(photos, start=1):
        with Image.open(path) as image:
            gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        if not samples.has_gps(number):
            assert gps == {}, path.name
            continue
        with_gps.append(number)
        latitude = gps[ExifTags.GPS.GPSLatitude]
        longitude = gps[ExifTags.GPS.GPSLongitude]
        assert gps[ExifTags.GPS.GPSLatitudeRef] in ("N", "S")
        assert gps[ExifTags.GPS.GPSLongitudeRef] in ("E", "W")
        assert len(latitude) == 3
        assert 0 <= float(latitude[0]) <= 90
        assert len(longitude) == 3
        assert 0 <= float(longitude[0]) <= 180
        assert 0 <= float(latitude[1]) < 60
        assert 0 <= float(latitude[2]) < 60
        assert gps[ExifTags.GPS.GPSAltitudeRef] in (b"\x00", b"\x01")
        assert float(gps[ExifTags.GPS.GPSAltitude]) >= 0
    assert with_gps == [1, 4, 7]


def test_below_sea_level_altitude() -> None:
    """Some seed/number pair lands on the Dead Sea, written with AltitudeRef 1."""
    refs = set()
    for seed in range(40):
        data = samples.render_jpeg(1, 32, 24, seed=seed, progressive=False)
        with Image.open(io.BytesIO(data)) as image:
            gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        refs.add(gps[ExifTags.GPS.GPSAltitudeRef])
    assert refs == {b"\x00", b"\x01"}


def test_same_seed_same_bytes(tmp_path: Path, photos: list[Path]) -> None:
    again = samples.generate(tmp_path, COUNT, megapixels=MEGAPIXELS, seed=7)
    for first, second in zip(photos, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_other_seed_other_bytes(tmp_path: Path, photos: list[Path]) -> None:
    other = samples.generate(tmp_path, 2, megapixels=MEGAPIXELS, seed=8)
    assert other[0].read_bytes() != photos[0].read_bytes()
    assert other[1].read_bytes() != photos[1].read_bytes()


def test_photo_independent_of_count(tmp_path: Path, photos: list[Path]) -> None:
    fewer = samples.generate(tmp_path, 3, megapixels=MEGAPIXELS, seed=7)
    for first, second in zip(fewer, photos[:3], strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_baseline_by_default(photos: list[Path]) -> None:
    for path in photos:
        assert start_of_frame_marker(path.read_bytes()) == 0xC0, path.name
        with Image.open(path) as image:
            assert "progressive" not in image.info, path.name


def test_progressive_when_requested(tmp_path: Path) -> None:
    paths = samples.generate(tmp_path, 2, megapixels=MEGAPIXELS, progressive=True)
    for path in paths:
        assert start_of_frame_marker(path.read_bytes()) == 0xC2, path.name
        with Image.open(path) as image:
            assert image.info.get("progressive") == 1, path.name


def test_photos_have_grain(photos: list[Path]) -> None:
    """Neighbouring pixels differ as in a photo, not as in a smooth upscale."""
    scene = samples.render_scene(1, WIDTH, HEIGHT, seed=7)
    with Image.open(photos[0]) as image:
        grainy = image.convert("RGB")
    shifted_scene = ImageChops.offset(scene, 1, 0)
    shifted_grainy = ImageChops.offset(grainy, 1, 0)
    assert mean_difference(grainy, shifted_grainy) > mean_difference(
        scene, shifted_scene
    )
