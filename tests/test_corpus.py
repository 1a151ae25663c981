"""Expected outcome of every file in the shared corpus of real images.

Each corpus file goes through the default pipeline once per module, and
every file must be done or rejected with a specific Reason. Some fault kinds
can yield wrong pixels in a run that succeeds, so those outputs are compared
with a reference: the upright control of the orientation set, Pillow's own
decode, or a LittleCMS conversion through Pillow's ImageCms. The corpus's
MANIFEST.md describes each file and its origin.
"""

from __future__ import annotations

import io
import resource
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageSequence

from conftest import CORPUS
from imgflow.config import PipelineConfig, parse_config
from imgflow.errors import Reason, Status
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

pytestmark = pytest.mark.corpus

DONE = None

# Expected outcome of each corpus file: DONE, or the Reason of its rejection.
EXPECTED: dict[str, Reason | None] = {
    "Pillow/decompression_bomb.gif": Reason.TOO_MANY_PIXELS,
    "Pillow/exif_gps.jpg": DONE,
    "Pillow/exif_imagemagick_orientation.png": DONE,
    "Pillow/exif_typeerror.jpg": DONE,
    "Pillow/hopper_bad_exif.jpg": DONE,
    "Pillow/hopper_orientation_6.webp": DONE,
    "Pillow/i_trns.png": DONE,
    "Pillow/icc-after-SOF.jpg": DONE,
    "Pillow/icc_profile_big.jpg": DONE,
    "Pillow/invalid-exif.jpg": DONE,
    "Pillow/iptc.jpg": DONE,
    "Pillow/iss634.gif": DONE,
    "Pillow/iss634.webp": DONE,
    "Pillow/junk_jpeg_header.jpg": DONE,
    "Pillow/multiple_exif.jpg": DONE,
    "Pillow/p_trns_single.png": DONE,
    "Pillow/pil_sample_cmyk.jpg": DONE,
    "Pillow/sugarshack.mpo": DONE,
    "Pillow/sugarshack_bad_mpo_header.jpg": DONE,
    "Pillow/tiff_16bit_RGBa.tiff": DONE,
    "Pillow/truncated_image.png": Reason.TRUNCATED,
    "Pillow/truncated_jpeg.jpg": Reason.TRUNCATED,
    # The primary image of this Ultra HDR file ends inside its scan data.
    "Pillow/ultrahdr.jpg": Reason.TRUNCATED,
    "Pillow/uncompressed_la.png": DONE,
    "Pillow/xmp_test.jpg": DONE,
    **{f"exif-orientation-examples/Landscape_{n}.jpg": DONE for n in range(9)},
    **{f"exif-orientation-examples/Portrait_{n}.jpg": DONE for n in range(1, 9)},
    "pydicom/CT_small.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/JPEG-lossy.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/MR_small.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/MR_truncated.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/UN_sequence.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/no_meta.dcm": Reason.FORMAT_NOT_ALLOWED,
    "pydicom/priv_SQ.dcm": Reason.FORMAT_NOT_ALLOWED,
    "thumbor/16383x16383.png": Reason.TOO_MANY_PIXELS,
    "thumbor/BlueSquare_truncated.jpg": Reason.TRUNCATED,
    "thumbor/broken-exif-tag.jpg": DONE,
    "thumbor/cmyk.jpg": DONE,
    "thumbor/grayscale-icc.jpg": DONE,
    "thumbor/image.heic": DONE,
    "thumbor/image_invalid.jpg": Reason.NOT_AN_IMAGE,
    "thumbor/invalid_quantization.jpg": DONE,
    "thumbor/paletted-transparent.png": DONE,
}

BOMBS = ["Pillow/decompression_bomb.gif", "thumbor/16383x16383.png"]
CMYK = ["Pillow/pil_sample_cmyk.jpg", "thumbor/cmyk.jpg"]
# Files with an embedded ICC profile other than sRGB: Adobe RGB (1998),
# a 'TIFF RGB' profile of about 0.5 MB, and a 'Dot Gain 20%' grey profile.
NON_SRGB_PROFILE = [
    "Pillow/xmp_test.jpg",
    "Pillow/icc_profile_big.jpg",
    "thumbor/grayscale-icc.jpg",
]
TRANSPARENT = [
    "Pillow/p_trns_single.png",
    "thumbor/paletted-transparent.png",
    "Pillow/uncompressed_la.png",
    "Pillow/i_trns.png",
    "Pillow/tiff_16bit_RGBa.tiff",
]
ANIMATED = ["Pillow/iss634.gif", "Pillow/iss634.webp"]
MALFORMED_EXIF = [
    "Pillow/hopper_bad_exif.jpg",
    "Pillow/invalid-exif.jpg",
    "thumbor/broken-exif-tag.jpg",
    "Pillow/exif_gps.jpg",
]
# Files whose variants must match Pillow's decode, oriented by the EXIF
# orientation that Pillow reads.
MATCHES_PILLOW = [
    "Pillow/hopper_orientation_6.webp",
    "thumbor/image.heic",
    "Pillow/sugarshack.mpo",
    "Pillow/sugarshack_bad_mpo_header.jpg",
    "Pillow/junk_jpeg_header.jpg",
    "thumbor/invalid_quantization.jpg",
    "Pillow/exif_typeerror.jpg",
    "Pillow/iptc.jpg",
    "Pillow/hopper_bad_exif.jpg",
    "Pillow/invalid-exif.jpg",
    "Pillow/multiple_exif.jpg",
    "thumbor/broken-exif-tag.jpg",
    "Pillow/icc-after-SOF.jpg",
    "Pillow/exif_gps.jpg",
]
ORIENTATION_SET = "exif-orientation-examples"
LANDSCAPE_CONTROL = f"{ORIENTATION_SET}/Landscape_1.jpg"
PORTRAIT_CONTROL = f"{ORIENTATION_SET}/Portrait_1.jpg"

# Mean absolute difference, in 8-bit levels, below which two renderings of
# one picture count as the same. On this corpus, mean_difference puts the
# orientation variants at most 2.3 levels from their control, and a mirrored
# picture about 72 levels away.
SAME_PICTURE_LEVELS = 8.0

# Peak memory growth allowed while a bomb is rejected. Decoding the smaller
# bomb, 16383x16383 pixels, would need about 800 MB for RGB.
BOMB_MEMORY_BYTES = 256 * 1024 * 1024


def listed_files() -> list[str]:
    """Return every file named in EXPECTED or present in the corpus folder."""
    names = set(EXPECTED)
    if CORPUS.is_dir():
        names |= {
            path.relative_to(CORPUS).as_posix()
            for path in CORPUS.rglob("*")
            if path.is_file() and path.name != "MANIFEST.md"
        }
    return sorted(names)


def expected_outcome(name: str) -> Reason | None:
    """Return DONE or the expected Reason of a corpus file.

    DICOM is out of scope, so every .dcm file must be rejected as a format
    that is not allowed.
    """
    if name.endswith(".dcm"):
        return Reason.FORMAT_NOT_ALLOWED
    if name not in EXPECTED:
        pytest.fail(f"corpus file {name} has no expected outcome; add it to EXPECTED")
    return EXPECTED[name]


ALL_FILES = listed_files()
# A file missing from EXPECTED fails test_corpus_file_outcome, not collection.
DONE_FILES = [name for name in ALL_FILES if name in EXPECTED and EXPECTED[name] is DONE]
DICOM_FILES = [name for name in ALL_FILES if name.endswith(".dcm")]


@dataclass(frozen=True)
class Outcome:
    """One corpus file's result and the folder its variants were written to."""

    result: ImageResult
    out_dir: Path

    def variant_path(self, name: str) -> Path:
        record = next(v for v in self.result.variants if v.name == name)
        return self.out_dir / record.path

    def variant(self, name: str) -> Image.Image:
        with Image.open(self.variant_path(name)) as image:
            image.load()
            return image

    def variants(self) -> Iterator[tuple[str, Image.Image]]:
        for record in self.result.variants:
            yield record.name, self.variant(record.name)


@pytest.fixture(scope="module")
def outcome(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Outcome]:
    """Return a function that runs a corpus file through the default pipeline once."""
    out_dir = tmp_path_factory.mktemp("corpus_out")
    pipeline = Pipeline(PipelineConfig(), out_dir)
    cache: dict[str, Outcome] = {}

    def run(name: str) -> Outcome:
        if name not in cache:
            path = corpus / name
            assert path.is_file(), (
                f"{name} is listed in EXPECTED but missing from {corpus}"
            )
            result = pipeline.process(Source(index=0, path=str(path)))
            cache[name] = Outcome(result, out_dir)
        return cache[name]

    return run


def pixels(image: Image.Image, width: int = 64) -> np.ndarray:
    """Box-downscale to `width` (aspect kept) and return RGB levels as floats."""
    height = max(1, round(width * image.height / image.width))
    rgb = image.convert("RGB").resize((width, height), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.float64)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute RGB difference of two pictures, both box-downscaled alike."""
    return float(np.abs(pixels(first) - pixels(second)).mean())


def flattened_on_white(image: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white, as a JPEG variant is."""
    if image.mode.startswith("I"):
        levels = np.asarray(image, dtype=np.float64)
        grey = levels * 255 / 65535
        transparent = image.info.get("transparency")
        alpha = np.ones_like(grey) if transparent is None else (levels != transparent)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        alpha = np.asarray(alpha, dtype=np.float64)[..., None]
    else:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        rgb, alpha = rgba[..., :3], rgba[..., 3:] / 255
    blended = rgb * alpha + 255 * (1 - alpha)
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def transparent_mask(image: Image.Image) -> np.ndarray:
    """Return a boolean mask of the fully transparent pixels of `image`."""
    if image.mode.startswith("I"):
        transparent = image.info.get("transparency")
        levels = np.asarray(image)
        return levels == transparent
    return np.asarray(image.convert("RGBA"))[..., 3] == 0


def pillow_orientation(image: Image.Image) -> int:
    """Return the EXIF orientation Pillow reads, 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (SyntaxError, ValueError, OSError):
        return 1
    return value if value in range(1, 9) else 1


# Pillow transposes that display stored pixels for each EXIF orientation.
DISPLAY_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def pillow_reference(path: Path) -> Image.Image:
    """Decode the first frame with Pillow, orient it and flatten it on white."""
    if path.suffix == ".heic":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    # Pillow warns about the damaged EXIF and MPO headers these files test.
    with warnings.catch_warnings(action="ignore"), Image.open(path) as image:
        image.seek(0)
        orientation = pillow_orientation(image)
        picture = flattened_on_white(image)
    transpose = DISPLAY_TRANSPOSE.get(orientation)
    return picture if transpose is None else picture.transpose(transpose)


def decimal_gps(path: Path) -> dict[str, float] | None:
    """Read a valid GPS position from the source EXIF as signed decimal degrees.

    Returns None when there is no GPS block, or when it contains no latitude and
    longitude as degrees, minutes and seconds within range.
    """
    try:
        with warnings.catch_warnings(action="ignore"), Image.open(path) as image:
            gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    except (SyntaxError, ValueError, OSError):
        return None

    def degrees(parts: object, ref: object, limit: float) -> float | None:
        if not isinstance(parts, tuple) or len(parts) != 3:
            return None
        try:
            value = float(parts[0]) + float(parts[1]) / 60 + float(parts[2]) / 3600
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not abs(value) <= limit:
            return None
        return -value if ref in ("S", "W") else value

    latitude = degrees(gps.get(2), gps.get(1), 90)
    longitude = degrees(gps.get(4), gps.get(3), 180)
    if latitude is None or longitude is None:
        return None
    return {"latitude": latitude, "longitude": longitude}


# --- outcome of every file --------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FILES)
def test_corpus_file_outcome(outcome: Callable[[str], Outcome], name: str) -> None:
    """Each corpus file is done, or rejected with its expected Reason."""
    expected = expected_outcome(name)
    result = outcome(name).result
    if expected is DONE:
        assert result.status is Status.DONE, f"{result.reason}: {result.message}"
        assert result.reason is None
        assert [record.name for record in result.variants] == [
            "thumb",
            "medium",
            "large",
        ]
        return
    assert result.status is Status.REJECTED, result.status
    assert result.reason is expected, result.message
    assert result.message, "a rejection must explain itself"
    assert result.variants == []


@pytest.mark.parametrize("name", DONE_FILES)
def test_corpus_variant_files(outcome: Callable[[str], Outcome], name: str) -> None:
    """Every variant file exists with the recorded size, as 8-bit RGB or grey JPEG."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    for record in done.result.variants:
        image = done.variant(record.name)
        assert image.format == "JPEG", record.name
        assert image.mode in ("RGB", "L"), f"{record.name} is {image.mode}"
        assert image.size == (record.width, record.height), record.name
        assert min(image.size) >= 1, record.name


@pytest.mark.parametrize("name", DICOM_FILES)
def test_dicom_rejection_names_format(
    outcome: Callable[[str], Outcome], name: str
) -> None:
    """A DICOM file is rejected as format dicom, which is not allowed."""
    result = outcome(name).result
    assert result.reason is Reason.FORMAT_NOT_ALLOWED, result.message
    assert "format dicom" in (result.message or "")


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_rejected_before_decode(corpus: Path, tmp_path: Path, name: str) -> None:
    """A decompression bomb is rejected in validation, using little memory."""
    pipeline = Pipeline(PipelineConfig(), tmp_path / "out")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = pipeline.process(Source(index=0, path=str(corpus / name)))
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.reason is Reason.TOO_MANY_PIXELS, result.message
    assert result.stage == "validate"
    assert "validate.max_pixels" in (result.message or "")
    # ru_maxrss is the peak resident size in KiB on Linux. It grows only when
    # this call needs more memory than any earlier point of the process.
    assert (peak_after - peak_before) * 1024 < BOMB_MEMORY_BYTES


# --- EXIF orientation set ---------------------------------------------------------


def orientation_cases() -> list[tuple[str, str, int]]:
    cases = []
    for n in (0, 2, 3, 4, 5, 6, 7, 8):
        cases.append((f"{ORIENTATION_SET}/Landscape_{n}.jpg", LANDSCAPE_CONTROL, n))
    for n in range(2, 9):
        cases.append((f"{ORIENTATION_SET}/Portrait_{n}.jpg", PORTRAIT_CONTROL, n))
    return cases


@pytest.mark.parametrize(
    ("name", "control", "orientation"),
    orientation_cases(),
    ids=[Path(case[0]).stem for case in orientation_cases()],
)
def test_orientation_matches_control(
    outcome: Callable[[str], Outcome], name: str, control: str, orientation: int
) -> None:
    """Each orientation variant renders like the orientation-1 control."""
    oriented = outcome(name)
    upright = outcome(control)
    assert oriented.result.status is Status.DONE, oriented.result.message
    assert upright.result.status is Status.DONE, upright.result.message
    # Orientation 0 is out of range, and viewers show such files unrotated.
    assert oriented.result.metadata["orientation"] == (orientation or 1)
    landscape = "Landscape" in name
    meta = oriented.result.metadata
    assert (meta["display_width"] > meta["display_height"]) == landscape
    for record, control_record in zip(
        oriented.result.variants, upright.result.variants, strict=True
    ):
        assert (record.width, record.height) == (
            control_record.width,
            control_record.height,
        ), record.name
        assert (record.width > record.height) == landscape, record.name
    difference = mean_difference(oriented.variant("thumb"), upright.variant("thumb"))
    assert difference < SAME_PICTURE_LEVELS, f"thumb differs by {difference:.1f} levels"


# --- colour -----------------------------------------------------------------------


@pytest.mark.parametrize("name", CMYK)
def test_cmyk_converted_not_inverted(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """A CMYK JPEG becomes 3-band sRGB that follows Pillow's CMYK decode."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    assert done.result.metadata["colour_mode"] == "CMYK"
    output = done.variant("large")
    assert output.mode == "RGB"
    profile = output.info.get("icc_profile")
    assert profile, "no ICC profile in the output"
    description = ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(profile))
    )
    assert "srgb" in description.lower(), description
    with Image.open(corpus / name) as source:
        # Pillow undoes the Adobe APP14 inversion but applies no CMYK profile,
        # so its colours differ in tone but not in direction.
        reference = source.convert("RGB")
    found, expected = pixels(output).ravel(), pixels(reference).ravel()
    correlation = float(np.corrcoef(found, expected)[0, 1])
    assert correlation > 0.5, f"correlation with Pillow's decode is {correlation:.2f}"
    inverted = float(np.abs(found - (255 - expected)).mean())
    direct = float(np.abs(found - expected).mean())
    assert direct < inverted, (
        f"closer to the inverted picture ({inverted:.1f} < {direct:.1f})"
    )


@pytest.mark.parametrize("name", NON_SRGB_PROFILE)
def test_profile_converted_to_srgb(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """Pixels in another ICC profile are converted to sRGB like LittleCMS does."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    output = done.variant("large")
    with Image.open(corpus / name) as source:
        source.load()
        profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
        converted = ImageCms.profileToProfile(
            source, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
        unconverted = source.convert("RGB")
    assert converted is not None
    to_converted = mean_difference(output, converted)
    to_unconverted = mean_difference(output, unconverted)
    assert to_converted < 2.0, f"differs from the sRGB conversion by {to_converted:.2f}"
    assert to_converted < to_unconverted, (
        f"closer to the unconverted pixels ({to_unconverted:.2f} < {to_converted:.2f})"
    )


@pytest.mark.parametrize("name", TRANSPARENT)
def test_transparency_flattened_on_white(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """Palette, grey+alpha and 16-bit images keep their tones, flattened on white."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    output = done.variant("large")
    with Image.open(corpus / name) as source:
        source.load()
        reference = flattened_on_white(source)
        mask = transparent_mask(source)
    assert output.size == reference.size
    found = np.asarray(output.convert("RGB"), dtype=np.float64)
    tone_error = float(np.abs(found - np.asarray(reference, dtype=np.float64)).mean())
    assert tone_error < 6.0, (
        f"differs from the white-flattened source by {tone_error:.1f}"
    )
    assert mask.any(), "the source has no fully transparent pixel"
    # JPEG blurs colour edges, so transparent pixels beside opaque ones sit
    # a little below white; the mean over all of them stays close to 255.
    transparent_level = float(found[mask].mean())
    assert transparent_level > 235, f"transparent areas average {transparent_level:.1f}"


@pytest.mark.parametrize("name", ANIMATED)
def test_animation_first_frame(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """An animated file gives still variants of its first frame."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    assert done.result.metadata["pages"] > 1
    output = done.variant("thumb")
    with Image.open(corpus / name) as source:
        frames = [flattened_on_white(frame) for frame in ImageSequence.Iterator(source)]
    assert output.size == frames[0].size
    to_first = mean_difference(output, frames[0])
    to_others = [mean_difference(output, frame) for frame in frames[1:]]
    assert to_first < 3.0, f"differs from the first frame by {to_first:.2f}"
    assert to_first < max(to_others), "the first frame is not the closest match"


@pytest.mark.parametrize("name", MATCHES_PILLOW)
def test_pixels_match_pillow(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """Variants match Pillow's oriented decode of the same file."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    output = done.variant("large")
    reference = pillow_reference(corpus / name)
    assert output.size == reference.size
    difference = mean_difference(output, reference)
    assert difference < 4.0, f"differs from Pillow's decode by {difference:.2f}"


# --- metadata: malformed EXIF and GPS ---------------------------------------------


@pytest.mark.parametrize("name", MALFORMED_EXIF)
def test_malformed_exif_warns(outcome: Callable[[str], Outcome], name: str) -> None:
    """A file with malformed EXIF is done, with a warning about the EXIF."""
    result = outcome(name).result
    assert result.status is Status.DONE, result.message
    assert result.warnings, "malformed EXIF produced no warning"
    assert any("exif" in warning.lower() for warning in result.warnings), (
        result.warnings
    )


def test_invalid_gps_warns(outcome: Callable[[str], Outcome]) -> None:
    """A GPS block with out-of-range values is reported as a warning, not recorded."""
    result = outcome("Pillow/exif_gps.jpg").result
    assert result.status is Status.DONE, result.message
    assert "gps" not in result.metadata["exif"]
    assert any("GPS" in warning for warning in result.warnings), result.warnings


@pytest.mark.parametrize("name", DONE_FILES)
def test_gps_recorded_when_valid(
    corpus: Path, outcome: Callable[[str], Outcome], name: str
) -> None:
    """A valid source GPS position is recorded in decimal degrees, else none is."""
    result = outcome(name).result
    assert result.status is Status.DONE, result.message
    expected = decimal_gps(corpus / name)
    recorded = result.metadata.get("exif", {}).get("gps")
    if expected is None:
        assert recorded is None, recorded
        return
    assert recorded is not None, "valid GPS in the source was not recorded"
    assert recorded["latitude"] == pytest.approx(expected["latitude"], abs=1e-6)
    assert recorded["longitude"] == pytest.approx(expected["longitude"], abs=1e-6)


@pytest.mark.parametrize("name", DONE_FILES)
def test_outputs_carry_no_gps(outcome: Callable[[str], Outcome], name: str) -> None:
    """No output variant carries a GPS block by default."""
    done = outcome(name)
    assert done.result.status is Status.DONE, done.result.message
    for variant, image in done.variants():
        exif = image.getexif()
        assert ExifTags.IFD.GPSInfo not in exif, variant
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo), variant


@pytest.fixture(scope="module")
def keep_exif_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    config = parse_config({"output": {"keep_exif": True}})
    return Pipeline(config, tmp_path_factory.mktemp("keep_exif_out"))


# With keep_exif, imgflow reads the source EXIF again through Pillow, which
# warns about the damaged EXIF and MPO headers of some corpus files.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", DONE_FILES)
def test_keep_exif_drops_gps(
    corpus: Path,
    outcome: Callable[[str], Outcome],
    keep_exif_pipeline: Pipeline,
    name: str,
) -> None:
    """With output.keep_exif, variants keep their size but no GPS or rotation tag."""
    default = outcome(name).result
    result = keep_exif_pipeline.process(Source(index=0, path=str(corpus / name)))
    assert result.status is Status.DONE, result.message
    default_sizes = [(v.width, v.height) for v in default.variants]
    assert [(v.width, v.height) for v in result.variants] == default_sizes
    for record in result.variants:
        with Image.open(keep_exif_pipeline.layout.root / record.path) as image:
            exif = image.getexif()
        assert ExifTags.IFD.GPSInfo not in exif, record.name
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo), record.name
        assert exif.get(ExifTags.Base.Orientation, 1) == 1, record.name
