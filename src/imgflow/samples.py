"""Generate deterministic sample camera photos for the demo, the tests and benchmarks.

Each sample is a JPEG meant to cost about what a camera photo costs to process,
made only from files already installed on the machine:

- The scene is a mosaic of one to four crops of the natural colour photographs
  that the scikit-image wheel ships in its ``skimage/data`` folder. These are an
  astronaut, a cat, a coffee cup, a rocket, a motorcycle, a retina and a Hubble
  deep field. They are read straight from that folder, so nothing is fetched over
  the network. Real content makes JPEG coding cost what it costs on real photos,
  where flat synthetic patterns would compress unrealistically well.
- The crops are upscaled to a 4:3 frame of the requested size (12 MP gives
  4000x3000, 0.3 MP gives 640x480) and get a per-shot exposure and white-balance
  cast.
- Film grain (seeded Gaussian noise per colour channel, stronger at higher ISO)
  restores the fine detail that upscaling removes. With it, a 12 MP file at JPEG
  quality 90 weighs about 1.7-3.7 MB (seed 0, photos 1-24).
- Camera EXIF written with Pillow: Make, Model, LensModel, DateTime,
  DateTimeOriginal, ExposureTime, FNumber, ISOSpeedRatings and FocalLength.
  Photo numbers 1, 4, 7, ... (one in three) also carry GPS latitude, longitude and
  altitude, one of the locations being below sea level.
- Photo numbers divisible by 4 carry EXIF Orientation 6, the remaining multiples
  of 5 carry 8 and the remaining multiples of 7 carry 3. All others carry 1. The
  stored pixels of a rotated photo are turned the other way, so a viewer that
  honours the tag shows the scene upright. Stored 3000x4000 pixels with
  Orientation 6 or 8 therefore display as 4000x3000.
- Baseline JPEG by default. ``progressive=True`` writes progressive JPEGs, which
  decoders cannot shrink on load the way they shrink baseline ones.

Photo number ``n`` depends only on ``n``, ``seed``, ``megapixels`` and
``progressive``, not on ``count``. Its bytes are the same on every run with the
same versions of Pillow (and its libjpeg), numpy and scikit-image. Other versions
may resample, encode or draw random numbers differently.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from functools import cache
from pathlib import Path
from statistics import NormalDist
from typing import TypeVar

import numpy as np
import skimage
from PIL import ExifTags, Image, ImageChops, TiffImagePlugin

from imgflow.config import ValidateConfig

__all__ = [
    "frame_size",
    "generate",
    "has_gps",
    "orientation_for",
    "render_jpeg",
    "render_scene",
]

# Natural colour photographs inside the scikit-image 0.26 wheel. Its greyscale,
# synthetic and microscopy files are left out.
SOURCE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
)

JPEG_QUALITY = 90
MAX_TILES = 4

# Stored pixels are turned by the inverse of the transpose that a viewer applies
# for each Orientation value, as in PIL.ImageOps.exif_transpose.
_STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class _Camera:
    make: str
    model: str
    lens: str
    focal_range_mm: tuple[float, float]
    max_aperture: float


_CAMERAS = (
    _Camera("Canon", "Canon EOS R6", "RF24-105mm F4 L IS USM", (24, 105), 4.0),
    _Camera(
        "NIKON CORPORATION", "NIKON Z 6_2", "NIKKOR Z 24-70mm f/4 S", (24, 70), 4.0
    ),
    _Camera("FUJIFILM", "X-T4", "XF18-55mmF2.8-4 R LM OIS", (18, 55), 2.8),
    _Camera("SONY", "ILCE-7M3", "FE 85mm F1.8", (85, 85), 1.8),
    _Camera(
        "Apple",
        "iPhone 13",
        "iPhone 13 back dual wide camera 5.1mm f/1.6",
        (5.1, 5.1),
        1.6,
    ),
)

_SHUTTER_SPEEDS = (
    Fraction(1, 4000),
    Fraction(1, 2000),
    Fraction(1, 1000),
    Fraction(1, 500),
    Fraction(1, 250),
    Fraction(1, 125),
    Fraction(1, 60),
    Fraction(1, 30),
    Fraction(1, 15),
)
_F_STOPS = (1.6, 1.8, 2.0, 2.8, 4.0, 5.6, 8.0, 11.0, 16.0)
_ISO_SPEEDS = (100, 200, 400, 800, 1600, 3200, 6400)


@dataclass(frozen=True)
class _Place:
    latitude: float
    longitude: float
    altitude_m: float


# One place in each hemisphere pair, plus one below sea level, so that readers of
# the samples meet every GPS reference letter and both altitude references.
_PLACES = (
    _Place(48.8584, 2.2945, 35.0),  # Paris
    _Place(35.0116, 135.7681, 48.0),  # Kyoto
    _Place(-33.9249, 18.4241, 25.0),  # Cape Town
    _Place(-22.9519, -43.2105, 700.0),  # Rio de Janeiro, Corcovado
    _Place(37.8199, -122.4783, 67.0),  # San Francisco
    _Place(64.1466, -21.9426, 14.0),  # Reykjavik
    _Place(31.5590, 35.4732, -430.0),  # Dead Sea shore
)

_T = TypeVar("_T")

_FIRST_SHOT = datetime(2024, 5, 18, 9, 12, 5)
_SHOT_INTERVAL = timedelta(minutes=7)


def frame_size(megapixels: float) -> tuple[int, int]:
    """Return the upright (width, height) of a 4:3 frame of about ``megapixels``.

    Both edges are multiples of 8 (width 4k, height 3k with k a multiple of 8),
    so 12 gives 4000x3000 and 0.3 gives 640x480. A frame never passes the
    default pixel limit of a run, so 100 gives 11520x8640.
    """
    if not math.isfinite(megapixels) or megapixels <= 0:
        raise ValueError(f"megapixels must be a positive number, got {megapixels!r}")
    unit = math.sqrt(megapixels * 1_000_000 / 12)
    unit = max(8, 8 * round(unit / 8))
    if 12 * unit * unit > ValidateConfig().max_pixels:
        unit -= 8
    return 4 * unit, 3 * unit


def generate(
    out_dir: Path,
    count: int,
    *,
    megapixels: float = 12.0,
    seed: int = 0,
    progressive: bool = False,
) -> list[Path]:
    """Write ``count`` sample photos ``IMG_0001.jpg``... into ``out_dir``.

    Creates ``out_dir`` if needed and overwrites files of the same names. Returns
    the written paths in photo-number order. Each file is written to a temporary
    name first and renamed, so an interrupted run leaves no truncated JPEG.
    """
    if count < 0:
        raise ValueError(f"count must be zero or more, got {count}")
    if seed < 0:
        raise ValueError(f"seed must be zero or more, got {seed}")
    width, height = frame_size(megapixels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    paths = []
    for number in range(1, count + 1):
        data = render_jpeg(number, width, height, seed=seed, progressive=progressive)
        path = out_dir / sample_name(number)
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            # Name the file, which the error of a failed rename leaves out.
            exc.filename = str(path)
            raise
        paths.append(path)
    return paths


def sample_name(number: int) -> str:
    """Return the file name of photo ``number``, as a camera names it."""
    return f"IMG_{number:04d}.jpg"


def orientation_for(number: int) -> int:
    """Return the EXIF Orientation value that photo ``number`` carries."""
    if number % 4 == 0:
        return 6
    if number % 5 == 0:
        return 8
    if number % 7 == 0:
        return 3
    return 1


def has_gps(number: int) -> bool:
    """Return whether photo ``number`` carries GPS tags (one photo in three)."""
    return number % 3 == 1


def render_jpeg(
    number: int, width: int, height: int, *, seed: int, progressive: bool
) -> bytes:
    """Encode photo ``number`` with an upright size of ``width`` x ``height``."""
    rng = _photo_rng(seed, number)
    # The scene takes the first draws, so render_scene can repeat it alone.
    image = _compose_scene(rng, width, height)
    camera = _pick(rng, _CAMERAS)
    iso = _pick(rng, _ISO_SPEEDS)

    orientation = orientation_for(number)
    if orientation in _STORE_TRANSPOSE:
        image = image.transpose(_STORE_TRANSPOSE[orientation])
    image = _add_grain(image, rng, _grain_sigma(iso))

    exif = _camera_exif(rng, number, camera, iso, orientation, image.size)
    buffer = io.BytesIO()
    image.save(
        buffer,
        "JPEG",
        quality=JPEG_QUALITY,
        subsampling="4:2:0",
        progressive=progressive,
        exif=exif.tobytes(),
    )
    return buffer.getvalue()


def render_scene(number: int, width: int, height: int, *, seed: int) -> Image.Image:
    """Return the upright scene of photo ``number``, without grain or EXIF.

    Tests compare it with what a viewer shows after applying the Orientation tag.
    """
    return _compose_scene(_photo_rng(seed, number), width, height)


def _photo_rng(seed: int, number: int) -> np.random.Generator:
    # Seeding from (seed, number) makes each photo independent of ``count``.
    return np.random.default_rng([seed, number])


@cache
def _source_photo(name: str) -> Image.Image:
    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"sample source photo not found: {path}. Reinstall scikit-image "
            "with pip install 'imgflow[samples]'."
        )
    with Image.open(path) as image:
        return image.convert("RGB")


def _compose_scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    tiles = _split_frame(rng, width, height)
    sources = rng.permutation(len(SOURCE_PHOTOS))[: len(tiles)]
    cast = _colour_cast_lut(rng)

    frame = Image.new("RGB", (width, height))
    for (left, top, right, bottom), source_index in zip(tiles, sources, strict=True):
        source = _source_photo(SOURCE_PHOTOS[int(source_index)]).point(cast)
        tile_size = (right - left, bottom - top)
        box = _crop_box(rng, source.size, tile_size)
        tile = source.resize(tile_size, Image.Resampling.BICUBIC, box=box)
        frame.paste(tile, (left, top))
    return frame


def _split_frame(
    rng: np.random.Generator, width: int, height: int
) -> list[tuple[int, int, int, int]]:
    """Cut the frame into 1 to ``MAX_TILES`` rectangles (left, top, right, bottom).

    Each cut halves the largest rectangle across its longer edge at 35-65%.
    """
    tiles = [(0, 0, width, height)]
    for _ in range(int(rng.integers(MAX_TILES))):
        tiles.sort(key=lambda t: (t[2] - t[0]) * (t[3] - t[1]), reverse=True)
        left, top, right, bottom = tiles.pop(0)
        fraction = rng.uniform(0.35, 0.65)
        if right - left >= bottom - top:
            cut = left + max(1, round((right - left) * fraction))
            tiles += [(left, top, cut, bottom), (cut, top, right, bottom)]
        else:
            cut = top + max(1, round((bottom - top) * fraction))
            tiles += [(left, top, right, cut), (left, cut, right, bottom)]
    return tiles


def _crop_box(
    rng: np.random.Generator,
    source_size: tuple[int, int],
    tile_size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """Pick a source region with the tile's aspect ratio that covers the tile."""
    source_width, source_height = source_size
    tile_width, tile_height = tile_size
    zoom = rng.uniform(1.0, 1.3)
    scale = max(tile_width / source_width, tile_height / source_height) * zoom
    crop_width = tile_width / scale
    crop_height = tile_height / scale
    left = rng.uniform(0, source_width - crop_width)
    top = rng.uniform(0, source_height - crop_height)
    return (left, top, left + crop_width, top + crop_height)


def _colour_cast_lut(rng: np.random.Generator) -> list[int]:
    """Build a ``point`` table for one shot's exposure and white balance."""
    exposure = rng.uniform(0.85, 1.15)
    gains = exposure * rng.uniform(0.92, 1.08, size=3)
    table: list[int] = []
    for gain in gains:
        table += [min(255, round(level * gain)) for level in range(256)]
    return table


def _grain_sigma(iso: int) -> float:
    # Standard deviation in 8-bit levels: 3.5 at ISO 100, 8.9 at ISO 6400.
    return 3.5 + 0.9 * math.log2(iso / 100)


@cache
def _grain_lut(sigma: float) -> list[int]:
    """Map uniform random bytes to Gaussian noise around level 128.

    The table contains the 256 quantiles of N(128, sigma). Applying it to random
    bytes with ``Image.point`` and adding the result with ``ImageChops`` took 0.26 s
    for a 12 MP RGB frame, where numpy normal floats took 0.94 s (2-core x86_64).
    """
    normal = NormalDist(128, sigma)
    levels = [
        min(255, max(0, round(normal.inv_cdf((i + 0.5) / 256)))) for i in range(256)
    ]
    return levels * 3


def _add_grain(
    image: Image.Image, rng: np.random.Generator, sigma: float
) -> Image.Image:
    width, height = image.size
    noise = Image.frombytes("RGB", (width, height), rng.bytes(3 * width * height))
    noise = noise.point(_grain_lut(sigma))
    # ImageChops.add computes image + noise - 128, clipped to 0..255.
    return ImageChops.add(image, noise, offset=-128)


def _rational(value: float | Fraction) -> TiffImagePlugin.IFDRational:
    fraction = Fraction(value).limit_denominator(10_000)
    return TiffImagePlugin.IFDRational(fraction.numerator, fraction.denominator)


def _degrees_minutes_seconds(
    value: float,
) -> tuple[TiffImagePlugin.IFDRational, ...]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 2)
    return (_rational(degrees), _rational(minutes), _rational(seconds))


def _pick(rng: np.random.Generator, values: Sequence[_T]) -> _T:
    return values[int(rng.integers(len(values)))]


def _camera_exif(
    rng: np.random.Generator,
    number: int,
    camera: _Camera,
    iso: int,
    orientation: int,
    stored_size: tuple[int, int],
) -> Image.Exif:
    shot_time = _FIRST_SHOT + number * _SHOT_INTERVAL
    shot_time += timedelta(seconds=int(rng.integers(300)))
    stamp = shot_time.strftime("%Y:%m:%d %H:%M:%S")

    low, high = camera.focal_range_mm
    focal_length = round(float(rng.uniform(low, high))) if high > low else low
    f_number = _pick(rng, [f for f in _F_STOPS if f >= camera.max_aperture])
    exposure = _pick(rng, _SHUTTER_SPEEDS)

    exif = Image.Exif()
    exif[ExifTags.Base.Make] = camera.make
    exif[ExifTags.Base.Model] = camera.model
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.XResolution] = _rational(72)
    exif[ExifTags.Base.YResolution] = _rational(72)
    exif[ExifTags.Base.ResolutionUnit] = 2  # inches
    exif[ExifTags.Base.Software] = "imgflow.samples"
    exif[ExifTags.Base.DateTime] = stamp

    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    exif_ifd[ExifTags.Base.ExifVersion] = b"0232"
    exif_ifd[ExifTags.Base.DateTimeOriginal] = stamp
    exif_ifd[ExifTags.Base.DateTimeDigitized] = stamp
    exif_ifd[ExifTags.Base.ExposureTime] = _rational(exposure)
    exif_ifd[ExifTags.Base.FNumber] = _rational(f_number)
    exif_ifd[ExifTags.Base.ISOSpeedRatings] = iso
    exif_ifd[ExifTags.Base.FocalLength] = _rational(focal_length)
    exif_ifd[ExifTags.Base.LensModel] = camera.lens
    exif_ifd[ExifTags.Base.ColorSpace] = 1  # sRGB
    exif_ifd[ExifTags.Base.ExifImageWidth] = stored_size[0]
    exif_ifd[ExifTags.Base.ExifImageHeight] = stored_size[1]

    if has_gps(number):
        place = _PLACES[int(rng.integers(len(_PLACES)))]
        latitude = place.latitude + rng.uniform(-0.01, 0.01)
        longitude = place.longitude + rng.uniform(-0.01, 0.01)
        altitude = place.altitude_m + round(rng.uniform(0, 5), 1)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if latitude >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _degrees_minutes_seconds(latitude)
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if longitude >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _degrees_minutes_seconds(longitude)
        # The altitude is unsigned, so AltitudeRef 1 marks a place below sea level.
        gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00" if altitude >= 0 else b"\x01"
        gps[ExifTags.GPS.GPSAltitude] = _rational(abs(altitude))
    return exif
