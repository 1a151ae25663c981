"""Truncated TIFF and GIF files, cut at many points, through the real pipeline.

libvips decodes many cut TIFFs without an error (missing strips come out
black), reports others as corrupt rather than truncated, and drops the
cut-off frames of a GIF, so the validate stage walks their structure.

Every file here is generated. The TIFFs come in strips and tiles,
uncompressed, LZW and deflate, in both byte orders, multi-page and BigTIFF.
The GIFs are still and animated, with and without their trailer byte.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image

from imgflow.errors import Reason, Status
from imgflow.records import ImageResult
from imgflow.stages.containers import gif_truncation, tiff_truncation
from imgflow.stages.validate import undecodable_reason

WriteFile = Callable[[str, bytes], Path]
Process = Callable[..., ImageResult]

# Fractions of the file length kept by each cut.
CUT_FRACTIONS = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)

KEEP_ANIMATION = {
    "transform": {"animation": "keep"},
    "variants": {"anim": {"size": 64, "format": "webp"}},
}


def noise_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Return random RGB pixels, which compress poorly, so cuts land in image data."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def noise_image(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    return Image.fromarray(noise_pixels(width, height, seed))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- TIFF sources -----------------------------------------------------------------


def pillow_tiff(**options: object) -> bytes:
    """Encode RGB noise as a TIFF in strips with Pillow (libtiff to compress)."""
    return encode(noise_image(), "TIFF", **options)


def pillow_multi_page_tiff(**options: object) -> bytes:
    pages = [noise_image(seed=seed) for seed in range(3)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], **options)


def pillow_big_endian_tiff() -> bytes:
    """Encode 16-bit grey noise as a big-endian ("MM") TIFF with Pillow."""
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 65536, (64, 96), dtype=np.uint16).astype(">u2")
    return encode(Image.frombytes("I;16B", (96, 64), samples.tobytes()), "TIFF")


def vips_tiled_tiff(**options: object) -> bytes:
    """Encode RGB noise as a TIFF of 16x16 tiles with libvips."""
    image = pyvips.Image.new_from_array(noise_pixels(96, 64)).copy(
        interpretation="srgb"
    )
    return image.tiffsave_buffer(tile=True, tile_width=16, tile_height=16, **options)


# Byte-swap codes of the TIFF field types that have a byte order. BYTE,
# ASCII, SBYTE and UNDEFINED (types 1, 2, 6 and 7) have none.
SWAP_CODES = {
    3: "H",
    8: "H",
    4: "I",
    9: "I",
    11: "I",
    13: "I",
    5: "II",
    10: "II",
    12: "Q",
}


def to_big_endian(data: bytes) -> bytes:
    """Rewrite a little-endian classic TIFF of 8-bit samples as big-endian.

    Every IFD field is swapped in place, so all offsets stay valid. Strips
    and tiles of 8-bit samples have no byte order and are copied unchanged.
    """
    assert data[:4] == b"II*\x00"
    swapped = bytearray(data)
    swapped[:4] = b"MM\x00*"

    def swap(offset: int, codes: str) -> int:
        values = struct.unpack_from("<" + codes, data, offset)
        struct.pack_into(">" + codes, swapped, offset, *values)
        return int(values[0])

    ifd = swap(4, "I")
    while ifd:
        count = swap(ifd, "H")
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            _, field_type, value_count = struct.unpack_from("<HHI", data, entry)
            swap(entry, "HHI")
            codes = SWAP_CODES.get(field_type, "B")
            length = struct.calcsize("<" + codes) * value_count
            value_offset = entry + 8
            if length > 4:
                value_offset = swap(entry + 8, "I")
            if field_type in SWAP_CODES:
                swap(value_offset, codes * value_count)
        ifd = swap(ifd + 2 + 12 * count, "I")
    return bytes(swapped)


TIFF_SOURCES: dict[str, Callable[[], bytes]] = {
    "strips-raw": pillow_tiff,
    "strips-lzw": lambda: pillow_tiff(compression="tiff_lzw"),
    "strips-deflate": lambda: pillow_tiff(compression="tiff_adobe_deflate"),
    "strips-raw-big-endian": pillow_big_endian_tiff,
    "strips-lzw-big-endian": lambda: to_big_endian(pillow_tiff(compression="tiff_lzw")),
    "tiles-raw": vips_tiled_tiff,
    "tiles-lzw": lambda: vips_tiled_tiff(compression="lzw"),
    "tiles-deflate-big-endian": lambda: to_big_endian(
        vips_tiled_tiff(compression="deflate")
    ),
    "multi-page-raw": pillow_multi_page_tiff,
    "multi-page-lzw": lambda: pillow_multi_page_tiff(compression="tiff_lzw"),
    "bigtiff-strips": lambda: pillow_tiff(big_tiff=True),
    "bigtiff-tiles": lambda: vips_tiled_tiff(bigtiff=True, compression="deflate"),
}


def test_big_endian_rewrite_keeps_pixels() -> None:
    """The byte-swapped test TIFFs decode to the pixels of their source."""
    for compression in ("lzw", "deflate"):
        original = vips_tiled_tiff(compression=compression)
        swapped = to_big_endian(original)
        assert swapped[:4] == b"MM\x00*"
        decoded = pyvips.Image.new_from_buffer(swapped, "").numpy()
        assert np.array_equal(decoded, noise_pixels(96, 64)), compression


@pytest.mark.parametrize("kind", sorted(TIFF_SOURCES))
def test_intact_tiff_done(write_file: WriteFile, process: Process, kind: str) -> None:
    data = TIFF_SOURCES[kind]()
    assert tiff_truncation(data) is None
    result = process(write_file("whole.tif", data))
    assert result.status is Status.DONE, result.message
    assert result.variants


@pytest.mark.parametrize("fraction", CUT_FRACTIONS)
@pytest.mark.parametrize("kind", sorted(TIFF_SOURCES))
def test_cut_tiff_rejected(
    write_file: WriteFile, process: Process, kind: str, fraction: float
) -> None:
    """A TIFF cut anywhere is rejected as truncated, not decoded with black."""
    data = TIFF_SOURCES[kind]()
    cut = int(len(data) * fraction)
    result = process(write_file("cut.tif", data[:cut]))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message
    assert result.stage == "validate"
    assert result.message.startswith("tiff ")
    assert f"but the file has {cut:,} bytes" in result.message
    assert result.variants == []


def test_cut_strip_message() -> None:
    """The message names the strip and where its data ends, as Pillow reads it."""
    data = pillow_tiff()
    with Image.open(io.BytesIO(data)) as image:
        offsets = image.tag_v2[273]
        byte_counts = image.tag_v2[279]
    assert len(offsets) == 1
    end = offsets[0] + byte_counts[0]
    cut = len(data) // 20
    assert tiff_truncation(data[:cut]) == (
        f"tiff page 1 strip 1 ends at byte {end:,} but the file has {cut:,} bytes"
    )


def tiff_entry(data: bytes | bytearray, tag: int) -> tuple[int, int, int, int]:
    """Find `tag` in the first IFD of a little-endian classic TIFF.

    Returns the entry's offset, field type, value count and value offset.
    """
    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        found, field_type, value_count = struct.unpack_from("<HHI", data, entry)
        if found == tag:
            size = struct.calcsize("<" + SWAP_CODES.get(field_type, "B"))
            value_offset = entry + 8
            if size * value_count > 4:
                value_offset = struct.unpack_from("<I", data, entry + 8)[0]
            return entry, field_type, value_count, value_offset
    raise AssertionError(f"tag {tag} is not in the first IFD")


def test_tile_past_end_message() -> None:
    """The message names the tile whose data passes the end of the file."""
    data = bytearray(vips_tiled_tiff())
    # libtiff writes the IFD last, so a cut would lose the IFD first: the
    # last tile's byte count is raised past the end of the file instead.
    _, field_type, tile_count, counts_offset = tiff_entry(data, 325)
    code = "<" + SWAP_CODES[field_type]
    last_count_offset = counts_offset + struct.calcsize(code) * (tile_count - 1)
    last_count = struct.unpack_from(code, data, last_count_offset)[0] + 1000
    struct.pack_into(code, data, last_count_offset, last_count)

    _, field_type, _, offsets_offset = tiff_entry(data, 324)
    code = "<" + SWAP_CODES[field_type]
    last_offset_offset = offsets_offset + struct.calcsize(code) * (tile_count - 1)
    last_start = struct.unpack_from(code, data, last_offset_offset)[0]
    last_end = last_start + last_count
    assert last_end > len(data)
    assert tiff_truncation(bytes(data)) == (
        f"tiff page 1 tile {tile_count} ends at byte {last_end:,} "
        f"but the file has {len(data):,} bytes"
    )


def test_lost_ifd_message() -> None:
    """libtiff writes the IFD after the strips, so most cuts lose the IFD."""
    data = pillow_tiff(compression="tiff_lzw")
    ifd_offset = struct.unpack_from("<I", data, 4)[0]
    assert ifd_offset > len(data) // 2
    message = tiff_truncation(data[: ifd_offset + 1])
    assert message is not None
    assert message.startswith("tiff page 1 IFD ends at byte ")


def test_lost_page_message() -> None:
    """A multi-page TIFF cut inside its second page names that page."""
    data = pillow_multi_page_tiff()
    cut = len(data) // 2
    message = tiff_truncation(data[:cut])
    assert message is not None
    assert message.startswith("tiff page 2 ")


def test_tag_value_past_end_message() -> None:
    """An IFD whose tag value lies past the end of the file is truncated."""
    data = bytearray(pillow_tiff(dpi=(72, 72)))
    # XResolution is a RATIONAL of 8 bytes, stored outside its entry.
    entry, field_type, _, _ = tiff_entry(data, 282)
    assert field_type == 5
    struct.pack_into("<I", data, entry + 8, len(data) - 4)
    assert tiff_truncation(bytes(data)) == (
        f"tiff page 1 tag 282 value ends at byte {len(data) + 4:,} "
        f"but the file has {len(data):,} bytes"
    )


MALFORMED_TIFFS = {
    "ifd-missing": b"II*\x00\x08\x00\x00\x00",
    "ifd-offset-zero": b"II*\x00\x00\x00\x00\x00" + bytes(8),
    "bigtiff-bad-offset-size": b"II+\x00\x04\x00\x00\x00" + bytes(16),
    "ifd-loop": b"II*\x00\x08\x00\x00\x00" + b"\x00\x00" + b"\x08\x00\x00\x00",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_TIFFS))
def test_malformed_tiff_header_no_crash(
    write_file: WriteFile, process: Process, kind: str
) -> None:
    """A damaged TIFF header is rejected by validation, never crashes it."""
    result = process(write_file("bad.tif", MALFORMED_TIFFS[kind]))
    assert result.status is Status.REJECTED
    assert result.stage == "validate"
    assert result.reason is not Reason.INTERNAL_ERROR, result.message


def test_strip_offsets_of_text_type_ignored() -> None:
    """StripOffsets of a type that is no integer stop the walk, with no crash."""
    data = bytearray(pillow_tiff())
    entry = tiff_entry(data, 273)[0]
    struct.pack_into("<H", data, entry + 2, 2)  # ASCII
    assert tiff_truncation(bytes(data[: len(data) // 2])) is None


def test_corpus_tiff_intact(corpus: Path) -> None:
    data = (corpus / "Pillow" / "tiff_16bit_RGBa.tiff").read_bytes()
    assert tiff_truncation(data) is None
    assert tiff_truncation(data[: len(data) // 2]) is not None


# --- GIF sources ------------------------------------------------------------------


def still_gif() -> bytes:
    return encode(noise_image().convert("P"), "GIF")


def animated_gif(**options: object) -> bytes:
    """Encode six frames of noise as a GIF.

    Pillow writes a local color table for a frame whose palette differs from
    the first frame's.
    """
    frames = [noise_image(80, 60, seed) for seed in range(6)]
    return encode(
        frames[0],
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        **options,
    )


GIF_SOURCES: dict[str, Callable[[], bytes]] = {
    "still": still_gif,
    "still-with-comment": lambda: encode(
        noise_image().convert("P"), "GIF", comment=b"written by the test"
    ),
    "animated": animated_gif,
    "animated-not-interlaced": lambda: animated_gif(interlace=False),
}


def gif_blocks(data: bytes) -> list[tuple[int, int]]:
    """Return (introducer byte, offset) of each extension and image block."""
    offset = 13
    if data[10] & 0x80:
        offset += 3 * (2 << (data[10] & 0x07))

    def skip_sub_blocks(at: int) -> int:
        while data[at] != 0:
            at += data[at] + 1
        return at + 1

    blocks = []
    while data[offset] != 0x3B:
        blocks.append((data[offset], offset))
        if data[offset] == 0x21:
            offset = skip_sub_blocks(offset + 2)
            continue
        assert data[offset] == 0x2C, f"unexpected GIF block 0x{data[offset]:02x}"
        packed = data[offset + 9]
        offset += 10
        if packed & 0x80:
            offset += 3 * (2 << (packed & 0x07))
        offset = skip_sub_blocks(offset + 1)
    return blocks


def frame_count(path: Path) -> int:
    with Image.open(path) as image:
        return int(getattr(image, "n_frames", 1))


@pytest.mark.parametrize("kind", sorted(GIF_SOURCES))
def test_intact_gif_done(write_file: WriteFile, process: Process, kind: str) -> None:
    data = GIF_SOURCES[kind]()
    assert data.endswith(b";")
    assert gif_truncation(data) is None
    result = process(write_file("whole.gif", data))
    assert result.status is Status.DONE, result.message


@pytest.mark.parametrize("kind", sorted(GIF_SOURCES))
def test_gif_without_trailer_done(
    write_file: WriteFile, process: Process, tmp_path: Path, kind: str
) -> None:
    """A GIF whose last block is whole but which lacks the trailer byte is done."""
    data = GIF_SOURCES[kind]()
    expected_frames = len([b for b, _ in gif_blocks(data) if b == 0x2C])
    assert gif_truncation(data[:-1]) is None
    result = process(write_file("no-trailer.gif", data[:-1]), KEEP_ANIMATION)
    assert result.status is Status.DONE, result.message
    assert result.metadata["pages"] == expected_frames
    if expected_frames > 1:
        assert frame_count(tmp_path / "out" / result.variants[0].path) == (
            expected_frames
        )


@pytest.mark.parametrize("fraction", CUT_FRACTIONS)
@pytest.mark.parametrize("kind", sorted(GIF_SOURCES))
def test_cut_gif_rejected(
    write_file: WriteFile, process: Process, kind: str, fraction: float
) -> None:
    """A GIF cut inside a block is rejected, not shortened to fewer frames."""
    data = GIF_SOURCES[kind]()
    cut = int(len(data) * fraction)
    result = process(write_file("cut.gif", data[:cut]), KEEP_ANIMATION)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message
    assert result.stage == "validate"
    assert f"but the file has {cut:,} bytes" in result.message
    assert result.variants == []


def block_cuts(data: bytes) -> dict[str, int]:
    """Return cut points inside each kind of block of an animated GIF."""
    blocks = gif_blocks(data)
    extensions = [offset for kind, offset in blocks if kind == 0x21]
    images = [offset for kind, offset in blocks if kind == 0x2C]
    second_image = images[1]
    packed = data[second_image + 9]
    assert packed & 0x80, "the second frame has no local color table"
    lzw_code_size = second_image + 10 + 3 * (2 << (packed & 0x07))
    return {
        "logical-screen-descriptor": 10,
        "global-color-table": 20,
        "extension": extensions[-1] + 3,
        "image-descriptor": second_image + 5,
        "local-color-table": second_image + 10 + 5,
        "lzw-code-size": lzw_code_size,
        "image-data": lzw_code_size + 200,
        "last-block-terminator": len(data) - 2,
    }


BLOCK_CUT_MESSAGES = {
    "logical-screen-descriptor": "gif logical screen descriptor ends at byte 13",
    "global-color-table": "gif global color table ends at byte ",
    "extension": "gif extension block at byte ",
    "image-descriptor": "gif frame 2 image descriptor ends at byte ",
    "local-color-table": "gif frame 2 local color table ends at byte ",
    "lzw-code-size": "gif frame 2 image data ends at byte ",
    "image-data": "gif frame 2 image data ends at byte ",
    "last-block-terminator": "gif frame 6 image data ends at byte ",
}


@pytest.mark.parametrize("block", sorted(BLOCK_CUT_MESSAGES))
def test_gif_cut_inside_block(
    write_file: WriteFile, process: Process, block: str
) -> None:
    """A cut inside any kind of block is rejected, with the block in the message."""
    data = animated_gif()
    cut = block_cuts(data)[block]
    result = process(write_file("cut.gif", data[:cut]), KEEP_ANIMATION)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message
    assert result.message.startswith(BLOCK_CUT_MESSAGES[block]), result.message


def test_gif_cut_before_first_image() -> None:
    """Whole blocks with no image after them are a cut, not a short GIF."""
    data = animated_gif()
    first_image = next(offset for kind, offset in gif_blocks(data) if kind == 0x2C)
    assert gif_truncation(data[:first_image]) == (
        f"gif data ends at byte {first_image:,} before the first image"
    )


def test_undecodable_gif_reason() -> None:
    """A decode failure counts as truncation only when a block is really cut."""
    data = animated_gif()
    assert undecodable_reason("gif", data[:-1]) is Reason.CORRUPT
    assert undecodable_reason("gif", data[: len(data) // 2]) is Reason.TRUNCATED


def test_undecodable_tiff_reason() -> None:
    data = pillow_tiff(compression="tiff_lzw")
    assert undecodable_reason("tiff", data) is Reason.CORRUPT
    assert undecodable_reason("tiff", data[: len(data) // 2]) is Reason.TRUNCATED


def test_gif_stray_bytes_left_to_decoder() -> None:
    """Bytes that start no GIF block are damage for the decoder, not a cut."""
    data = still_gif()
    assert gif_truncation(data[:-1] + b"\x00\x00\x00") is None


def test_corpus_gifs_intact(corpus: Path) -> None:
    data = (corpus / "Pillow" / "iss634.gif").read_bytes()
    assert gif_truncation(data) is None
    assert gif_truncation(data[: len(data) // 2]) is not None
