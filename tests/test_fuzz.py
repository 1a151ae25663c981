"""Property-based fuzzing of validation, decoding and metadata reading.

Hypothesis mutates small valid files (generated here, plus real files from
the corpus when it is present): it overwrites bytes, cuts the file short
and splices in junk. Whatever comes out, an image must end as done or with a
named reason, and never raise or hang.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import CORPUS, quadrant_pixels
from imgflow.config import parse_config
from imgflow.errors import Reason, Status
from imgflow.pipeline import Pipeline
from imgflow.records import Source
from imgflow.stages.metadata import read_metadata
from imgflow.stages.validate import validate

CONFIG = parse_config(
    {"variants": {"thumb": {"size": 32}}, "validate": {"max_pixels": 4_000_000}}
)
CORPUS_SEEDS = (
    "Pillow/hopper_bad_exif.jpg",
    "Pillow/iptc.jpg",
    "Pillow/p_trns_single.png",
    "Pillow/exif_gps.jpg",
    "thumbor/cmyk.jpg",
    "Pillow/hopper_orientation_6.webp",
)


def _generated() -> list[bytes]:
    image = Image.fromarray(quadrant_pixels(48, 32))
    seeds = []
    for fmt, options in (
        ("JPEG", {"quality": 80}),
        ("JPEG", {"progressive": True}),
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {"quality": 70}),
        ("TIFF", {}),
    ):
        buffer = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        exif[0x010F] = "Fuzz"
        save = dict(options)
        if fmt in ("JPEG", "WEBP", "PNG"):
            save["exif"] = exif
        image.save(buffer, fmt, **save)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _generated() + [
    (CORPUS / name).read_bytes() for name in CORPUS_SEEDS if (CORPUS / name).is_file()
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(CONFIG, tmp_path_factory.mktemp("fuzz-out"))


@settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated())
def test_mutated_file_gets_named_outcome(
    data: bytes, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A mutated file is either processed or turned away with a named reason."""
    path = tmp_path_factory.mktemp("fuzz-in") / "input.bin"
    path.write_bytes(data)
    result = pipeline.process(Source(0, str(path)))
    if result.status is not Status.DONE:
        assert result.reason in set(Reason)
        assert result.reason is not Reason.INTERNAL_ERROR, result.message
        assert result.message


@settings(max_examples=150, deadline=2000)
@given(data=mutated())
def test_metadata_never_raises(data: bytes) -> None:
    """Metadata reading of anything that validates returns fields and warnings."""
    try:
        header = validate(data, CONFIG.validation)
    except Exception as exc:  # noqa: BLE001 - only named rejections are allowed
        assert getattr(exc, "reason", None) in set(Reason), repr(exc)
        return
    fields, warnings = read_metadata(data, header, "0" * 64)
    assert fields["format"] == header.format
    assert all(isinstance(warning, str) for warning in warnings)
