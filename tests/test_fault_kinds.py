"""Fault kinds of real-world images, built from small generated files.

Each kind that the shared corpus covers with real files (EXIF orientation,
truncation, decompression bombs, CMYK, 16-bit, transparency, malformed EXIF,
GPS, animation) is rebuilt here with Pillow, numpy or pyvips, so a clone
without the corpus still tests every kind. Outputs are checked by pixels and
dimensions, never by bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin

from conftest import jpeg_bytes, quadrant_pixels
from imgflow.config import parse_config
from imgflow.errors import Reason, Status
from imgflow.pipeline import Pipeline
from imgflow.records import Header, ImageResult, Source
from imgflow.stages.metadata import read_metadata
from imgflow.stages.validate import error_lines

Colour = tuple[int, int, int]

RED: Colour = (255, 0, 0)
GREEN: Colour = (0, 255, 0)
BLUE: Colour = (0, 0, 255)
YELLOW: Colour = (255, 255, 0)
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)

# Colours of the four quadrants of `quadrant_pixels` as displayed.
QUADRANT_COLOURS: dict[str, Colour] = {
    "top-left": RED,
    "top-right": GREEN,
    "bottom-left": BLUE,
    "bottom-right": WHITE,
}

# The transpose that turns an upright picture into the stored pixels of a
# file tagged with this EXIF orientation. It is the inverse of the transpose
# that Pillow's ImageOps.exif_transpose applies for the same tag.
STORED_TRANSPOSE: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}

# JPEG coding at quality 85 moves flat colours by a few levels, and edges of
# chroma-subsampled blocks by more. Samples are taken away from the edges.
COLOUR_TOLERANCE = 40

DEFAULT_BOXES = {"thumb": 256, "medium": 1024, "large": 2048}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Encode a Pillow image to bytes in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def open_variant(out_dir: Path, result: ImageResult, name: str) -> Image.Image:
    """Open the output file of variant `name`, fully loaded."""
    record = next(variant for variant in result.variants if variant.name == name)
    with Image.open(out_dir / record.path) as image:
        image.load()
        return image


def variant_files(out_dir: Path, result: ImageResult) -> list[Image.Image]:
    """Open every output file of a result, fully loaded."""
    return [open_variant(out_dir, result, record.name) for record in result.variants]


def rgb_at(image: Image.Image, x: int, y: int) -> Colour:
    """Return the RGB colour of one pixel, repeating the level of a grey image."""
    value = image.convert("RGB").getpixel((x, y))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def quadrant_centres(image: Image.Image) -> dict[str, Colour]:
    """Return the colour at the centre of each quadrant of `image`."""
    width, height = image.size
    left, right = width // 4, (3 * width) // 4
    top, bottom = height // 4, (3 * height) // 4
    return {
        "top-left": rgb_at(image, left, top),
        "top-right": rgb_at(image, right, top),
        "bottom-left": rgb_at(image, left, bottom),
        "bottom-right": rgb_at(image, right, bottom),
    }


def is_close(
    found: Colour, expected: Colour, tolerance: int = COLOUR_TOLERANCE
) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, expected, strict=True))


def assert_upright_quadrants(image: Image.Image) -> None:
    """Assert that each quadrant colour of `quadrant_pixels` is in its own corner."""
    found = quadrant_centres(image)
    for corner, expected in QUADRANT_COLOURS.items():
        assert is_close(found[corner], expected), (
            f"{corner} quadrant is {found[corner]}, expected about {expected}"
        )


def noise_image(width: int = 128, height: int = 96) -> Image.Image:
    """An RGB image of random pixels, so compressed data fills the whole file."""
    rng = np.random.default_rng(11)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """Build one PNG chunk with a valid CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """Return (offset, marker) of each JPEG header segment up to the first scan."""
    segments = []
    offset = 2
    while offset + 4 <= len(data):
        assert data[offset] == 0xFF, f"no JPEG marker at offset {offset}"
        marker = data[offset + 1]
        segments.append((offset, marker))
        if marker == 0xDA:
            break
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return segments


def insert_app1(data: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment with `payload` right after the JPEG SOI marker."""
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def gif_descriptor_offsets(data: bytes) -> list[int]:
    """Return the offset of each image descriptor (0x2C) in a GIF file."""
    offset = 13
    if data[10] & 0x80:
        offset += 3 * (2 << (data[10] & 0x07))

    def skip_sub_blocks(at: int) -> int:
        while data[at] != 0:
            at += data[at] + 1
        return at + 1

    found = []
    while offset < len(data) and data[offset] != 0x3B:
        if data[offset] == 0x21:
            offset = skip_sub_blocks(offset + 2)
            continue
        assert data[offset] == 0x2C, f"unexpected GIF block 0x{data[offset]:02x}"
        found.append(offset)
        packed = data[offset + 9]
        offset += 10
        if packed & 0x80:
            offset += 3 * (2 << (packed & 0x07))
        # One byte of LZW minimum code size precedes the data sub-blocks.
        offset = skip_sub_blocks(offset + 1)
    return found


def animated_gif(colours: list[Colour], size: tuple[int, int] = (80, 60)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0
    )


def animated_webp(colours: list[Colour], size: tuple[int, int] = (80, 60)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(
        frames[0],
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
        lossless=True,
    )


FRAME_COLOURS = [RED, GREEN, BLUE, YELLOW]

WriteFile = Callable[[str, bytes], Path]
Process = Callable[..., ImageResult]


# --- EXIF orientation ---------------------------------------------------------

ORIENTATION_FORMATS = {
    "jpeg": ("JPEG", ".jpg", {"quality": 95}),
    "png": ("PNG", ".png", {}),
    # ImageMagick's way: the EXIF as hex text in a "Raw profile type exif" chunk.
    "png-text-profile": ("PNG", ".png", {}),
    "webp": ("WEBP", ".webp", {"lossless": True}),
}


def with_raw_exif_profile(png: bytes, exif: bytes) -> bytes:
    """Insert EXIF after the IHDR chunk the way ImageMagick writes it."""
    digits = exif.hex()
    lines = "\n".join(digits[at : at + 72] for at in range(0, len(digits), 72))
    text = f"\nexif\n{len(exif):8d}\n{lines}\n".encode()
    chunk = png_chunk(b"tEXt", b"Raw profile type exif\x00" + text)
    return png[:33] + chunk + png[33:]


def oriented_file(orientation: int, fmt: str) -> bytes:
    """Encode a 320x240 upright quadrant picture stored for `orientation`."""
    upright = Image.fromarray(quadrant_pixels(320, 240))
    transpose = STORED_TRANSPOSE[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    pillow_format, _, options = ORIENTATION_FORMATS[fmt]
    if fmt == "png-text-profile":
        data = with_raw_exif_profile(encode(stored, pillow_format), exif.tobytes())
    else:
        data = encode(stored, pillow_format, exif=exif, **options)
    # The generated file itself must display upright, or the test proves nothing.
    with Image.open(io.BytesIO(data)) as check:
        displayed = ImageOps.exif_transpose(check)
    assert displayed.size == (320, 240)
    return data


@pytest.mark.parametrize("fmt", sorted(ORIENTATION_FORMATS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_displays_upright(
    write_file: WriteFile, process: Process, tmp_path: Path, orientation: int, fmt: str
) -> None:
    """Every EXIF orientation puts each quadrant colour in its own corner."""
    suffix = ORIENTATION_FORMATS[fmt][1]
    path = write_file(
        f"oriented_{orientation}{suffix}", oriented_file(orientation, fmt)
    )
    result = process(path)
    assert result.status is Status.DONE, result.message
    assert result.metadata["orientation"] == orientation
    assert result.metadata["display_width"] == 320
    assert result.metadata["display_height"] == 240
    sizes = {record.name: (record.width, record.height) for record in result.variants}
    assert sizes["thumb"] == (256, 192)
    assert sizes["large"] == (320, 240)
    for name in ("thumb", "large"):
        image = open_variant(tmp_path / "out", result, name)
        assert image.size == sizes[name]
        assert_upright_quadrants(image)


# --- truncation -----------------------------------------------------------------

TRUNCATION_SOURCES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg": (".jpg", lambda: encode(noise_image(), "JPEG", quality=90)),
    "progressive-jpeg": (
        ".jpg",
        lambda: encode(noise_image(), "JPEG", quality=90, progressive=True),
    ),
    "png": (".png", lambda: encode(noise_image(), "PNG")),
    "gif": (".gif", lambda: encode(noise_image().convert("P"), "GIF")),
    "webp": (".webp", lambda: encode(noise_image(), "WEBP", quality=80)),
    "webp-lossless": (".webp", lambda: encode(noise_image(), "WEBP", lossless=True)),
    # AVIF has no end marker: libheif finds its boxes pointing past the end.
    "avif": (
        ".avif",
        lambda: pyvips.Image.new_from_memory(
            noise_image().tobytes(), *noise_image().size, 3, "uchar"
        ).heifsave_buffer(compression="av1"),
    ),
}

CUTS: dict[str, Callable[[int], int]] = {
    "half": lambda size: size // 2,
    "ninety-percent": lambda size: size * 9 // 10,
    "minus-2-bytes": lambda size: size - 2,
}


@pytest.mark.parametrize("cut", sorted(CUTS))
@pytest.mark.parametrize("kind", sorted(TRUNCATION_SOURCES))
def test_truncated_file_rejected(
    write_file: WriteFile, process: Process, kind: str, cut: str
) -> None:
    """A file cut short is rejected as truncated, wherever the cut falls."""
    suffix, build = TRUNCATION_SOURCES[kind]
    data = build()
    path = write_file(f"cut{suffix}", data[: CUTS[cut](len(data))])
    result = process(path)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message
    assert result.variants == []


def _scan_cut_with_end_marker(data: bytes, keep: float) -> bytes:
    """Cut a JPEG's scan data to `keep` of its length and close it with EOI."""
    start_of_scan = data.index(b"\xff\xda")
    scan_length = len(data) - 2 - start_of_scan
    return data[: start_of_scan + int(scan_length * keep)] + b"\xff\xd9"


MISSING_SCAN_DATA: dict[str, Callable[[], bytes]] = {
    # The header claims more pixels than the scan holds.
    "header-inflated": lambda: _inflate_sof(encode(noise_image(64, 64), "JPEG"), 1000),
    "header-inflated-large": lambda: _inflate_sof(
        encode(noise_image(64, 64), "JPEG"), 9000
    ),
    # The scan loses its end, but the file still ends with an end marker.
    "scan-cut-at-half": lambda: _scan_cut_with_end_marker(
        encode(noise_image(), "JPEG", quality=90), 0.5
    ),
}


def _inflate_sof(data: bytes, side: int) -> bytes:
    edited = bytearray(data)
    offset = next(at for at, marker in jpeg_segments(data) if marker == 0xC0)
    edited[offset + 5 : offset + 9] = struct.pack(">HH", side, side)
    return bytes(edited)


@pytest.mark.parametrize("kind", sorted(MISSING_SCAN_DATA))
def test_missing_scan_data_rejected(
    write_file: WriteFile, process: Process, kind: str
) -> None:
    """A JPEG whose scan ends before its pixels do is not padded with grey."""
    path = write_file("short-scan.jpg", MISSING_SCAN_DATA[kind]())
    result = process(path)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message
    assert result.variants == []


def test_inflated_header_skips_fast_path(tmp_path: Path) -> None:
    """The Pillow fast path hands an implausibly small JPEG to libvips."""
    data = MISSING_SCAN_DATA["header-inflated"]()
    path = tmp_path / "inflated.jpg"
    path.write_bytes(data)
    pipeline = Pipeline(parse_config({}), tmp_path / "out")
    result = pipeline.process(Source(0, str(path)), engine="pillow")
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED, result.message


def test_extraneous_bytes_still_decoded(
    write_file: WriteFile, process: Process
) -> None:
    """Damage libvips can decode around (stray bytes before a marker) passes."""
    data = encode(noise_image(), "JPEG", quality=90)
    end = data.rindex(b"\xff\xd9")
    path = write_file("stray.jpg", data[:end] + b"\x00\x00\x00" + data[end:])
    result = process(path)
    assert result.status is Status.DONE, result.message


def _tiff_data_range(data: bytes) -> tuple[int, int]:
    """Return the start and end of a little-endian TIFF's strip data."""
    with Image.open(io.BytesIO(data)) as image:
        offsets = image.tag_v2[273]
        counts = image.tag_v2[279]
    return offsets[0], offsets[-1] + counts[-1]


def _set_tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """Replace the value of a SHORT tag in the first IFD of a little-endian TIFF."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    (entries,) = struct.unpack_from("<H", data, ifd)
    for index in range(entries):
        entry = ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == tag:
            patched = bytearray(data)
            struct.pack_into("<H", patched, entry + 8, value)
            return bytes(patched)
    raise AssertionError(f"tag {tag} not found")


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "jpeg"])
def test_damaged_tiff_strips_rejected(
    write_file: WriteFile, process: Process, compression: str
) -> None:
    """Garbage inside compressed TIFF strips is corrupt, never a blank output."""
    data = encode(noise_image(256, 192), "TIFF", compression=compression)
    start, end = _tiff_data_range(data)
    middle = (start + end) // 2
    garbage = np.random.default_rng(3).bytes(min(3000, (end - start) // 3))
    damaged = data[:middle] + garbage + data[middle + len(garbage) :]
    result = process(write_file(f"{compression}.tif", damaged))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT
    assert "tiff decode failed" in (result.message or "")


def test_damaged_gif_frame_data_rejected(
    write_file: WriteFile, process: Process
) -> None:
    """Zeroed LZW data inside a full-length GIF is corrupt, not a striped output."""
    data = encode(noise_image().convert("P"), "GIF")
    middle = len(data) // 2
    damaged = data[:middle] + bytes(200) + data[middle + 200 :]
    result = process(write_file("zeroed.gif", damaged))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT
    assert "Invalid frame data" in (result.message or "")


def test_zeroed_progressive_scan_rejected(
    write_file: WriteFile, process: Process
) -> None:
    """Zeroed bytes that libjpeg reports as a bad Huffman code are corrupt.

    In a baseline scan libjpeg-turbo decodes the same damage without a
    warning, which the README lists as a known limit.
    """
    noise = np.random.default_rng(11).integers(0, 100, (192, 256, 3), dtype=np.uint8)
    pixels = (quadrant_pixels(256, 192) // 2 + noise).astype(np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG", quality=90, progressive=True)
    start = int(len(data) * 0.3)
    damaged = data[:start] + bytes(256) + data[start + 256 :]
    result = process(write_file("zeroed.jpg", damaged))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT, result.message
    assert "bad Huffman code" in (result.message or "")


def test_png_idat_crc_failure_rejected(write_file: WriteFile, process: Process) -> None:
    """An IDAT whose CRC fails is corrupt, though libvips would decode it."""
    data = bytearray(encode(noise_image(), "PNG"))
    data[37] ^= 0xFF  # the first byte of the IDAT chunk's CRC-covered type
    data[41] ^= 0xFF  # inside its data: the pixels still decode
    result = process(write_file("crc.png", bytes(data)))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT
    assert "fails its CRC check" in (result.message or "")


def test_png_ancillary_crc_failure_accepted(
    write_file: WriteFile, process: Process
) -> None:
    """A text chunk failing its CRC leaves the pixels intact, as libpng treats it."""
    data = encode(noise_image(), "PNG")
    text = png_chunk(b"tEXt", b"Comment\x00hello")
    broken = text[:-1] + bytes([text[-1] ^ 0xFF])
    result = process(write_file("text.png", data[:33] + broken + data[33:]))
    assert result.status is Status.DONE, result.message


def test_unknown_tiff_compression_rejected(
    write_file: WriteFile, process: Process
) -> None:
    """A compression scheme no codec implements is corrupt, named by libtiff."""
    data = encode(noise_image(), "TIFF", compression="tiff_lzw")
    result = process(write_file("scheme.tif", _set_tiff_tag(data, 259, 60000)))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT
    assert "60000" in (result.message or "")


def test_tiff_private_tags_processed(write_file: WriteFile, process: Process) -> None:
    """Unknown private tags only make libtiff warn, so the image is processed."""
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[65000] = "scanner settings"
    tags.tagtype[65000] = 2
    data = encode(noise_image(), "TIFF", compression="tiff_lzw", tiffinfo=tags)
    result = process(write_file("private.tif", data))
    assert result.status is Status.DONE, result.message


def _png_with_ihdr(width: int, height: int) -> bytes:
    data = encode(noise_image(), "PNG")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return data[:8] + png_chunk(b"IHDR", header) + data[33:]


def _png_without_idat() -> bytes:
    data = encode(noise_image(), "PNG")
    return data[:33] + png_chunk(b"IEND", b"")


def _png_bad_crc() -> bytes:
    data = bytearray(encode(noise_image(), "PNG"))
    data[40] ^= 0xFF  # inside the first IDAT chunk's data
    return bytes(data)


def test_cut_webp_names_riff_size(write_file: WriteFile, process: Process) -> None:
    """WebP has no end marker, so a cut names the size its RIFF header gives."""
    data = encode(noise_image(), "WEBP", quality=90)
    result = process(write_file("cut.webp", data[: len(data) // 2]))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TRUNCATED
    assert f"its RIFF header gives {len(data):,} bytes" in (result.message or "")


def test_png_chunk_type_damage_shown_as_hex(
    write_file: WriteFile, process: Process
) -> None:
    data = bytearray(encode(noise_image(), "PNG"))
    data[12:16] = b"\x00\x01\x02\x03"  # the IHDR chunk's type
    result = process(write_file("type.png", bytes(data)))
    assert result.status is Status.REJECTED
    assert "chunk 0x00010203 at byte 8" in (result.message or "")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: _png_with_ihdr(0, 96), "IHDR gives a size of 0x96 pixels"),
        (_png_without_idat, "no IDAT chunk"),
        (_png_bad_crc, "fails its CRC check"),
    ],
)
def test_png_fault_named(
    write_file: WriteFile,
    process: Process,
    build: Callable[[], bytes],
    expected: str,
) -> None:
    """A PNG that libvips cannot load is rejected with the fault in its chunks."""
    result = process(write_file("fault.png", build()))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.CORRUPT
    assert expected in (result.message or "")


# --- files that are not images ----------------------------------------------


def test_empty_file_rejected(write_file: WriteFile, process: Process) -> None:
    """A zero-byte file is rejected as empty."""
    result = process(write_file("empty.jpg", b""))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.EMPTY_FILE


def test_random_bytes_rejected(write_file: WriteFile, process: Process) -> None:
    """Random bytes are rejected as not an image."""
    data = np.random.default_rng(5).bytes(4096)
    result = process(write_file("noise.jpg", data))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.NOT_AN_IMAGE


def test_text_named_jpg_rejected(write_file: WriteFile, process: Process) -> None:
    """A text file with a .jpg name is rejected as not an image."""
    data = b"This is a text file, not a photo.\n" * 10
    result = process(write_file("notes.jpg", data))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.NOT_AN_IMAGE
    assert "signature" in (result.message or "")


def test_jpeg_named_png_processed(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A JPEG named .png is read as JPEG, from its bytes."""
    data = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    result = process(write_file("photo.png", data))
    assert result.status is Status.DONE, result.message
    assert result.metadata["format"] == "jpeg"
    assert_upright_quadrants(open_variant(tmp_path / "out", result, "thumb"))


def dicom_file(preamble: bytes) -> bytes:
    """A minimal DICOM Part 10 file: 128-byte preamble, "DICM", one data element."""
    # (0002,0010) Transfer Syntax UID, explicit VR "UI", Explicit VR Little Endian.
    uid = b"1.2.840.10008.1.2.1\x00"
    element = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(uid)) + uid
    return preamble.ljust(128, b"\x00") + b"DICM" + element


# DICOM/TIFF dual-personality files put a TIFF header in the preamble, so
# the same bytes open as TIFF in image viewers.
DICOM_PREAMBLES = {
    "zero-preamble": b"",
    "tiff-preamble": b"II*\x00\x08\x00\x00\x00",
}


@pytest.mark.parametrize("kind", sorted(DICOM_PREAMBLES))
def test_dicom_rejected_as_format(
    write_file: WriteFile, process: Process, kind: str
) -> None:
    """A DICOM file is rejected as format dicom, whatever its preamble contains."""
    result = process(write_file("scan.dcm", dicom_file(DICOM_PREAMBLES[kind])))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.FORMAT_NOT_ALLOWED, result.message
    assert "format dicom" in (result.message or "")


# --- decompression bombs ----------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims width x height, with the CRC fixed up."""
    data = encode(Image.new("RGB", (8, 8), RED), "PNG")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # IHDR follows the 8-byte signature and takes 25 bytes: length, type,
    # 13 data bytes and CRC.
    return data[:8] + png_chunk(b"IHDR", header) + data[33:]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 segment claims width x height."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (16, 16), RED)))
    offset = next(at for at, marker in jpeg_segments(bytes(data)) if marker == 0xC0)
    # SOF0: marker, length (2), precision (1), height (2), width (2).
    data[offset + 5 : offset + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A small TIFF whose ImageWidth and ImageLength tags claim width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack("<I", data[4:8])[0]
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    claimed = {256: width, 257: height}
    patched = set()
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, field_type = struct.unpack("<HH", data[entry : entry + 4])
        if tag not in claimed:
            continue
        if field_type == 3:
            data[entry + 8 : entry + 10] = struct.pack("<H", claimed[tag])
        else:
            data[entry + 8 : entry + 12] = struct.pack("<I", claimed[tag])
        patched.add(tag)
    assert patched == set(claimed)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A small lossless WebP whose VP8L header claims width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L"
    # VP8L header: signature 0x2F, then 14 bits width - 1 and 14 bits height - 1.
    assert data[20] == 0x2F
    bits = int.from_bytes(data[21:25], "little")
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[21:25] = bits.to_bytes(4, "little")
    return bytes(data)


def webp_canvas_claiming(width: int, height: int) -> bytes:
    """A small extended WebP whose VP8X chunk claims a canvas of width x height."""
    data = bytearray(encode(Image.new("RGBA", (16, 16), (255, 0, 0, 128)), "WEBP"))
    assert data[12:16] == b"VP8X"
    # VP8X payload: flags (4 bytes), canvas width - 1 and height - 1 (3 each).
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


HEADER_BOMBS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "png-ihdr": (".png", lambda: png_claiming(20000, 20000), "20000x20000"),
    "jpeg-sof": (".jpg", lambda: jpeg_claiming(60000, 60000), "60000x60000"),
    "tiff-ifd": (".tif", lambda: tiff_claiming(60000, 60000), "60000x60000"),
    "webp-vp8l": (".webp", lambda: webp_claiming(16383, 16383), "16383x16383"),
    # libwebp rejects a canvas over 16383 a side before libvips reads its size.
    "webp-vp8x": (".webp", lambda: webp_canvas_claiming(16384, 16384), "16384x16384"),
    "webp-vp8x-max": (
        ".webp",
        lambda: webp_canvas_claiming(2**24, 2**24),
        "16777216x16777216",
    ),
}


@pytest.mark.parametrize("kind", sorted(HEADER_BOMBS))
def test_header_bomb_rejected(
    write_file: WriteFile, process: Process, kind: str
) -> None:
    """A header claiming a huge size is rejected in validation, before decoding."""
    suffix, build, size = HEADER_BOMBS[kind]
    result = process(write_file(f"bomb{suffix}", build()))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TOO_MANY_PIXELS, result.message
    assert result.stage == "validate"
    assert size in (result.message or "")
    assert "validate.max_pixels" in (result.message or "")


def gif_with_frame(frame_index: int, width: int, height: int) -> bytes:
    """A 32x32 GIF of three frames whose frame `frame_index` claims width x height."""
    frames = [Image.new("P", (32, 32), index) for index in (1, 2, 3)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    data = bytearray(
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    )
    offsets = gif_descriptor_offsets(bytes(data))
    assert len(offsets) == 3
    # Image descriptor: 0x2C, then left, top, width and height as 16-bit little-endian.
    at = offsets[frame_index]
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


@pytest.mark.parametrize("frame_index", [0, 2], ids=["first-frame", "last-frame"])
def test_gif_frame_bomb_rejected(
    write_file: WriteFile, process: Process, frame_index: int
) -> None:
    """A GIF frame descriptor claiming 65535x65535 is rejected in validation."""
    result = process(write_file("bomb.gif", gif_with_frame(frame_index, 65535, 65535)))
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TOO_MANY_PIXELS, result.message
    assert result.stage == "validate"
    assert "65535" in (result.message or "")


def test_gif_wide_frame_counts_against_limit(
    write_file: WriteFile, process: Process
) -> None:
    """A 65535-pixel-wide GIF frame counts, though the logical screen is 32x32."""
    data = gif_with_frame(0, 65535, 32)
    config = {"validate": {"max_pixels": 1_000_000}}
    result = process(write_file("wide.gif", data), config)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TOO_MANY_PIXELS, result.message
    assert "65535" in (result.message or "")


# --- colour: CMYK and 16-bit --------------------------------------------------


def test_cmyk_jpeg_not_inverted(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A CMYK JPEG becomes sRGB with cyan still cyan and paper still white."""
    pixels = np.zeros((48, 64, 4), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0, 0)
    data = encode(Image.fromarray(pixels, "CMYK"), "JPEG", quality=95)
    result = process(write_file("cmyk.jpg", data))
    assert result.status is Status.DONE, result.message
    image = open_variant(tmp_path / "out", result, "thumb")
    assert image.mode == "RGB"
    red, green, blue = rgb_at(image, 16, 24)
    assert red < 100, f"cyan patch is {(red, green, blue)}"
    assert green > 100, f"cyan patch is {(red, green, blue)}"
    assert blue > 150, f"cyan patch is {(red, green, blue)}"
    assert min(rgb_at(image, 48, 24)) > 230, "the 0% ink patch is not white"


def test_16bit_grey_png_tones(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """16-bit grey levels 0, 32768 and 65535 become 8-bit 0, 128 and 255."""
    levels = np.zeros((16, 48), dtype=np.uint16)
    levels[:, 16:32] = 32768
    levels[:, 32:] = 65535
    data = encode(Image.fromarray(levels), "PNG")
    result = process(write_file("grey16.png", data))
    assert result.status is Status.DONE, result.message
    assert result.metadata["bit_depth"] == 16
    image = open_variant(tmp_path / "out", result, "thumb")
    assert rgb_at(image, 8, 8)[0] <= 3
    assert abs(rgb_at(image, 24, 8)[0] - 128) <= 3
    assert rgb_at(image, 40, 8)[0] >= 252


def test_16bit_rgb_png_tones(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """16-bit RGB (32768, 65535, 16384) becomes 8-bit (128, 255, 64)."""
    pixels = np.empty((16, 16, 3), dtype=np.uint16)
    pixels[...] = (32768, 65535, 16384)
    image16 = pyvips.Image.new_from_array(pixels).copy(interpretation="rgb16")
    result = process(write_file("rgb16.png", image16.pngsave_buffer()))
    assert result.status is Status.DONE, result.message
    assert result.metadata["bit_depth"] == 16
    colour = rgb_at(open_variant(tmp_path / "out", result, "thumb"), 8, 8)
    assert is_close(colour, (128, 255, 64), tolerance=4), colour


# --- transparency -----------------------------------------------------------------


def test_palette_transparency_becomes_white(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A transparent palette entry turns white in JPEG, opaque entries keep colour."""
    image = Image.new("P", (64, 32), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (32, 0, 64, 32))
    result = process(write_file("palette.png", encode(image, "PNG", transparency=0)))
    assert result.status is Status.DONE, result.message
    output = open_variant(tmp_path / "out", result, "thumb")
    assert is_close(rgb_at(output, 12, 16), WHITE, tolerance=8)
    assert is_close(rgb_at(output, 52, 16), BLUE)


def rgba_halves() -> bytes:
    """A 96x32 RGBA PNG of transparent green, half-alpha black and opaque red bands."""
    image = Image.new("RGBA", (96, 32), (0, 128, 0, 0))
    image.paste((0, 0, 0, 128), (32, 0, 64, 32))
    image.paste((200, 0, 0, 255), (64, 0, 96, 32))
    return encode(image, "PNG")


def test_rgba_flattened_on_white(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """RGBA is flattened onto white by default."""
    result = process(write_file("alpha.png", rgba_halves()))
    assert result.status is Status.DONE, result.message
    output = open_variant(tmp_path / "out", result, "thumb")
    assert is_close(rgb_at(output, 12, 16), WHITE, tolerance=8)
    assert is_close(rgb_at(output, 48, 16), (127, 127, 127), tolerance=8)
    assert is_close(rgb_at(output, 84, 16), (200, 0, 0))


def test_rgba_flattened_on_configured_black(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """transform.background = #000000 flattens transparency onto black."""
    config = {"transform": {"background": "#000000"}}
    result = process(write_file("alpha.png", rgba_halves()), config)
    assert result.status is Status.DONE, result.message
    output = open_variant(tmp_path / "out", result, "thumb")
    assert is_close(rgb_at(output, 12, 16), BLACK, tolerance=8)
    assert is_close(rgb_at(output, 48, 16), BLACK, tolerance=8)
    assert is_close(rgb_at(output, 84, 16), (200, 0, 0))


def test_grey_alpha_flattened_on_white(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """Grey plus alpha (LA) keeps its grey and turns transparent areas white."""
    image = Image.new("LA", (64, 32), (100, 0))
    image.paste((50, 255), (32, 0, 64, 32))
    result = process(write_file("grey_alpha.png", encode(image, "PNG")))
    assert result.status is Status.DONE, result.message
    output = open_variant(tmp_path / "out", result, "thumb")
    assert rgb_at(output, 12, 16)[0] >= 250
    assert abs(rgb_at(output, 52, 16)[0] - 50) <= 4


# --- geometry ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(10000, 1), (1, 5000)], ids=["10000x1", "1x5000"])
def test_extreme_aspect_keeps_pixels(
    write_file: WriteFile, process: Process, tmp_path: Path, size: tuple[int, int]
) -> None:
    """A 1-pixel strip keeps one pixel across and fits its long side to each box."""
    data = encode(Image.new("RGB", size, (10, 120, 200)), "PNG")
    result = process(write_file("strip.png", data))
    assert result.status is Status.DONE, result.message
    long_side = max(size)
    for record in result.variants:
        image = open_variant(tmp_path / "out", result, record.name)
        assert min(record.width, record.height) == 1, record
        assert max(record.width, record.height) == min(
            DEFAULT_BOXES[record.name], long_side
        ), record
        assert image.size == (record.width, record.height), record.name
        assert (image.width >= image.height) == (size[0] >= size[1]), record.name


def test_single_pixel_image(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A 1x1 image gives 1x1 variants of the same colour."""
    data = encode(Image.new("RGB", (1, 1), (30, 160, 90)), "PNG")
    result = process(write_file("dot.png", data))
    assert result.status is Status.DONE, result.message
    for record in result.variants:
        image = open_variant(tmp_path / "out", result, record.name)
        assert image.size == (1, 1), record.name
        assert is_close(rgb_at(image, 0, 0), (30, 160, 90), tolerance=12), record.name


# --- validation settings ----------------------------------------------------------


def test_disallowed_format_rejected(write_file: WriteFile, process: Process) -> None:
    """A JPEG is rejected when validate.allowed_formats names only png."""
    data = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    config = {"validate": {"allowed_formats": ["png"]}}
    result = process(write_file("photo.jpg", data), config)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.FORMAT_NOT_ALLOWED
    assert "jpeg" in (result.message or "")
    assert "allowed_formats" in (result.message or "")


def test_file_over_byte_limit_rejected(write_file: WriteFile, process: Process) -> None:
    """A file one byte over validate.max_file_bytes is rejected."""
    data = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    config = {"validate": {"max_file_bytes": len(data) - 1}}
    result = process(write_file("photo.jpg", data), config)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.FILE_TOO_LARGE
    assert "max_file_bytes" in (result.message or "")
    assert f"{len(data):,}" in (result.message or "")


def test_file_at_byte_limit_accepted(write_file: WriteFile, process: Process) -> None:
    """A file exactly validate.max_file_bytes long is accepted."""
    data = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    config = {"validate": {"max_file_bytes": len(data)}}
    result = process(write_file("photo.jpg", data), config)
    assert result.status is Status.DONE, result.message


# --- malformed EXIF ---------------------------------------------------------------

MALFORMED_EXIF: dict[str, bytes] = {
    "random-payload": b"Exif\x00\x00" + np.random.default_rng(3).bytes(60),
    "not-a-tiff-header": b"Exif\x00\x00\xff\xff\xff\xff\x00\x00\x00\x08" + bytes(40),
    # IFD0 claims 32 entries but contains one.
    "ifd-cut-short": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x20"
    + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06",
    # IFD0 offset points past the end of the segment.
    "ifd-offset-past-end": b"Exif\x00\x00II*\x00\xff\xff\x00\x00",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_EXIF))
def test_malformed_exif_warns(
    write_file: WriteFile, process: Process, tmp_path: Path, kind: str
) -> None:
    """A JPEG with a damaged EXIF segment is done, with an EXIF warning."""
    base = jpeg_bytes(Image.fromarray(quadrant_pixels(64, 48)))
    result = process(
        write_file("bad_exif.jpg", insert_app1(base, MALFORMED_EXIF[kind]))
    )
    assert result.status is Status.DONE, result.message
    assert result.warnings, "damaged EXIF produced no warning"
    assert any("exif" in warning.lower() for warning in result.warnings), (
        result.warnings
    )
    # Each fault is named once, without the stray spaces Pillow leaves.
    assert len(set(result.warnings)) == len(result.warnings)
    assert all(warning == " ".join(warning.split()) for warning in result.warnings)
    assert_upright_quadrants(open_variant(tmp_path / "out", result, "thumb"))


def test_file_pillow_cannot_open_warns_plainly(
    write_file: WriteFile, process: Process
) -> None:
    """A Lab TIFF, which Pillow cannot open, is done with a plain warning."""
    data = pyvips.Image.black(16, 12, bands=3).colourspace("lab").tiffsave_buffer()
    result = process(write_file("lab.tif", data))
    assert result.status is Status.DONE, result.message
    assert result.warnings == [
        "header: Pillow cannot open this file, so its EXIF, IPTC, XMP and colour "
        "profile fields were not read"
    ]


# --- GPS and kept EXIF ------------------------------------------------------------

GPS = ExifTags.GPS


def gps_block(
    latitude: tuple[str, tuple[float, float, float]],
    longitude: tuple[str, tuple[float, float, float]],
    altitude: float,
    below_sea_level: bool,
) -> dict[int, object]:
    """Build an EXIF GPS block from (reference, degrees-minutes-seconds) pairs."""
    return {
        GPS.GPSLatitudeRef: latitude[0],
        GPS.GPSLatitude: latitude[1],
        GPS.GPSLongitudeRef: longitude[0],
        GPS.GPSLongitude: longitude[1],
        GPS.GPSAltitudeRef: b"\x01" if below_sea_level else b"\x00",
        GPS.GPSAltitude: altitude,
    }


GPS_CASES = {
    "north-west-above-sea": (
        gps_block(("N", (52.0, 22.0, 12.5)), ("W", (4.0, 53.0, 30.0)), 12.5, False),
        {"latitude": 52.3701389, "longitude": -4.8916667, "altitude": 12.5},
    ),
    "south-east-below-sea": (
        gps_block(("S", (33.0, 51.0, 54.0)), ("E", (151.0, 12.0, 36.0)), 5.0, True),
        {"latitude": -33.865, "longitude": 151.21, "altitude": -5.0},
    ),
}


def camera_jpeg(gps: dict[int, object], orientation: int = 6) -> bytes:
    """A 64x48 quadrant JPEG stored for `orientation`, with camera EXIF and GPS."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestMake"
    exif[ExifTags.Base.Model] = "TestModel"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = gps
    upright = Image.fromarray(quadrant_pixels(64, 48))
    transpose = STORED_TRANSPOSE[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    return jpeg_bytes(stored, exif=exif)


@pytest.mark.parametrize("case", sorted(GPS_CASES))
def test_gps_recorded_as_decimal_degrees(
    write_file: WriteFile, process: Process, case: str
) -> None:
    """GPS degrees, minutes and seconds are recorded as signed decimal degrees."""
    gps, expected = GPS_CASES[case]
    result = process(write_file("gps.jpg", camera_jpeg(gps)))
    assert result.status is Status.DONE, result.message
    recorded = result.metadata["exif"]["gps"]
    assert recorded["latitude"] == pytest.approx(expected["latitude"], abs=1e-6)
    assert recorded["longitude"] == pytest.approx(expected["longitude"], abs=1e-6)
    assert recorded["altitude"] == pytest.approx(expected["altitude"], abs=1e-2)


def test_gps_absent_from_outputs(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """By default no output variant carries EXIF GPS."""
    gps = GPS_CASES["north-west-above-sea"][0]
    result = process(write_file("gps.jpg", camera_jpeg(gps)))
    assert result.status is Status.DONE, result.message
    for record, image in zip(
        result.variants, variant_files(tmp_path / "out", result), strict=True
    ):
        exif = image.getexif()
        assert ExifTags.IFD.GPSInfo not in exif, record.name
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo), record.name


def test_keep_exif_drops_gps(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """output.keep_exif keeps Make and Model, resets orientation and drops GPS."""
    gps = GPS_CASES["north-west-above-sea"][0]
    config = {"output": {"keep_exif": True}}
    result = process(write_file("gps.jpg", camera_jpeg(gps, orientation=6)), config)
    assert result.status is Status.DONE, result.message
    for record, image in zip(
        result.variants, variant_files(tmp_path / "out", result), strict=True
    ):
        exif = image.getexif()
        assert exif.get(ExifTags.Base.Make) == "TestMake", record.name
        assert exif.get(ExifTags.Base.Model) == "TestModel", record.name
        assert exif.get(ExifTags.Base.Orientation) == 1, record.name
        assert ExifTags.IFD.GPSInfo not in exif, record.name
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo), record.name
        assert image.size == (64, 48), record.name
        assert_upright_quadrants(image)


# --- animation, multi-picture and HEIC --------------------------------------------

ANIMATED_SOURCES = {
    "gif": (".gif", animated_gif),
    "webp": (".webp", animated_webp),
}


@pytest.mark.parametrize("fmt", sorted(ANIMATED_SOURCES))
def test_animation_first_frame_default(
    write_file: WriteFile, process: Process, tmp_path: Path, fmt: str
) -> None:
    """An animated image gives still variants of its first frame by default."""
    suffix, build = ANIMATED_SOURCES[fmt]
    result = process(write_file(f"anim{suffix}", build(FRAME_COLOURS)))
    assert result.status is Status.DONE, result.message
    assert result.metadata["pages"] == len(FRAME_COLOURS)
    image = open_variant(tmp_path / "out", result, "thumb")
    assert image.size == (80, 60)
    assert getattr(image, "n_frames", 1) == 1
    assert is_close(rgb_at(image, 40, 30), RED), rgb_at(image, 40, 30)


@pytest.mark.parametrize("fmt", sorted(ANIMATED_SOURCES))
def test_animation_keep_writes_frames(
    write_file: WriteFile, process: Process, tmp_path: Path, fmt: str
) -> None:
    """transform.animation = keep writes every frame, in order, to a webp variant."""
    suffix, build = ANIMATED_SOURCES[fmt]
    config = {
        "transform": {"animation": "keep"},
        "variants": {"anim": {"size": 64, "format": "webp"}},
    }
    result = process(write_file(f"anim{suffix}", build(FRAME_COLOURS)), config)
    assert result.status is Status.DONE, result.message
    record = result.variants[0]
    assert (record.width, record.height) == (64, 48)
    with Image.open(tmp_path / "out" / record.path) as image:
        assert image.format == "WEBP"
        assert image.n_frames == len(FRAME_COLOURS)
        assert image.size == (64, 48)
        for index, expected in enumerate(FRAME_COLOURS):
            image.seek(index)
            found = rgb_at(image, 32, 24)
            assert is_close(found, expected), f"frame {index} is {found}"


@pytest.mark.parametrize("fit", ["cover", "exact", "inside"])
@pytest.mark.parametrize("fmt", sorted(ANIMATED_SOURCES))
def test_animation_keep_every_fit(
    write_file: WriteFile, process: Process, tmp_path: Path, fmt: str, fit: str
) -> None:
    """Each fit mode keeps every frame at the variant's size, in order."""
    suffix, build = ANIMATED_SOURCES[fmt]
    config = {
        "transform": {"animation": "keep"},
        "variants": {"anim": {"width": 40, "height": 40, "fit": fit, "format": "webp"}},
    }
    result = process(write_file(f"anim{suffix}", build(FRAME_COLOURS)), config)
    assert result.status is Status.DONE, result.message
    record = result.variants[0]
    # The 80x60 frames fit inside the box at 40x30, and fill it otherwise.
    expected = (40, 30) if fit == "inside" else (40, 40)
    assert (record.width, record.height) == expected
    with Image.open(tmp_path / "out" / record.path) as image:
        assert image.n_frames == len(FRAME_COLOURS)
        assert image.size == expected
        for index, colour in enumerate(FRAME_COLOURS):
            image.seek(index)
            found = rgb_at(image, expected[0] // 2, expected[1] // 2)
            assert is_close(found, colour), f"frame {index} is {found}"


@pytest.mark.parametrize("fmt", sorted(ANIMATED_SOURCES))
def test_animation_keep_limits_all_frames(
    write_file: WriteFile, process: Process, fmt: str
) -> None:
    """With animation kept, the pixel limit counts every kept frame."""
    suffix, build = ANIMATED_SOURCES[fmt]
    data = build(FRAME_COLOURS)
    frame_pixels = 80 * 60
    # Room for one frame, not for all of them.
    limit = frame_pixels * (len(FRAME_COLOURS) - 1)
    keep = {
        "validate": {"max_pixels": limit},
        "transform": {"animation": "keep"},
        "variants": {"anim": {"size": 64, "format": "webp"}},
    }
    result = process(write_file(f"anim{suffix}", data), keep)
    assert result.status is Status.REJECTED
    assert result.reason is Reason.TOO_MANY_PIXELS
    assert "transform.max_frames" in (result.message or "")
    # Fewer kept frames fit, and the first frame alone always does.
    fewer = {**keep, "transform": {"animation": "keep", "max_frames": 2}}
    assert process(write_file(f"few{suffix}", data), fewer).status is Status.DONE
    first = {**keep, "transform": {"animation": "first"}}
    assert process(write_file(f"first{suffix}", data), first).status is Status.DONE


def test_mpo_first_picture(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A two-picture MPO gives variants of its first picture."""
    first = Image.fromarray(quadrant_pixels(64, 48))
    second = Image.new("RGB", (64, 48), YELLOW)
    data = encode(first, "MPO", save_all=True, append_images=[second])
    result = process(write_file("stereo.mpo", data))
    assert result.status is Status.DONE, result.message
    image = open_variant(tmp_path / "out", result, "thumb")
    assert image.size == (64, 48)
    assert_upright_quadrants(image)


def test_heic_processed(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A HEIC image is decoded and keeps its quadrant colours."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    data = encode(Image.fromarray(quadrant_pixels(64, 48)), "HEIF", quality=95)
    result = process(write_file("photo.heic", data))
    assert result.status is Status.DONE, result.message
    assert result.metadata["format"] == "heic"
    image = open_variant(tmp_path / "out", result, "thumb")
    assert image.size == (64, 48)
    assert_upright_quadrants(image)


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            "VipsJpeg: Quantization table 0x00 was not defined\n"
            "jpegload_buffer: load error\n",
            ["VipsJpeg: Quantization table 0x00 was not defined"],
        ),
        ("webp2vips: unable to read pixels\nwebpload_buffer: load error\n",
         ["webp2vips: unable to read pixels"]),
        ("tiff2vips: ZLib error\ntiff2vips: read error\n", ["tiff2vips: ZLib error"]),
        ("a: x\na: x\nb: y\n", ["a: x", "b: y"]),
        ("jpegload_buffer: load error\n", ["jpegload_buffer: load error"]),
        # A loader's failed seeks are dropped, and libheif's code joins its message.
        ("source: bad seek to 1024\nheif: Unexpected end of file\n (2.100)\n",
         ["heif: Unexpected end of file (2.100)"]),
    ],
)  # fmt: skip
def test_error_lines_skip_wrappers(detail: str, expected: list[str]) -> None:
    """Messages name the decoder's fault, whatever lines libvips adds after it."""
    assert error_lines(pyvips.Error("unable to call", detail)) == expected


# --- grey with alpha, and unusual TIFF samples -----------------------------------


def _grey_alpha_inputs() -> dict[str, bytes]:
    """Fully transparent grey images, each carrying its alpha another way."""
    clear = np.zeros((48, 64, 2), np.uint8)
    grey_key = Image.fromarray(np.zeros((48, 64), np.uint8), "L")
    return {
        "la.png": encode(Image.fromarray(clear, "LA"), "PNG"),
        "la16.png": pyvips.Image.new_from_array(np.zeros((48, 64, 2), np.uint16))
        .copy(interpretation="grey16")
        .pngsave_buffer(),
        "trns.png": encode(grey_key, "PNG", transparency=0),
    }


@pytest.mark.parametrize("name", sorted(_grey_alpha_inputs()))
def test_grey_alpha_flattened_on_coloured_background(
    write_file: WriteFile, process: Process, tmp_path: Path, name: str
) -> None:
    """A grey image with alpha takes the background's colour, not its brightness."""
    config = {"transform": {"background": "#ff0000"}}
    result = process(write_file(name, _grey_alpha_inputs()[name]), config)
    assert result.status is Status.DONE, result.message
    thumb = open_variant(tmp_path / "out", result, "thumb").convert("RGB")
    red, green, blue = thumb.getpixel((10, 10))
    assert red >= 250
    assert green <= 5
    assert blue <= 5


def _half_bright_grey() -> np.ndarray:
    """A grey image whose left half is 0 and right half 200 of 255."""
    grey = np.zeros((48, 64), np.uint8)
    grey[:, 32:] = 200
    return grey


def _half_bright_tiff(kind: str) -> bytes:
    """A grey TIFF whose right half stores 200 of 255, in the sample `kind`."""
    grey = _half_bright_grey()
    samples = {
        "float-0-to-1": (grey / 255).astype(np.float32),
        "float-0-to-255": grey.astype(np.float32),
        "signed-16-bit": grey.astype(np.int16) * 128,
        "signed-32-bit": grey.astype(np.int32) * 2**23,
    }
    return pyvips.Image.new_from_array(samples[kind]).tiffsave_buffer()


@pytest.mark.parametrize(
    "kind", ["float-0-to-1", "float-0-to-255", "signed-16-bit", "signed-32-bit"]
)
def test_unusual_tiff_samples_keep_their_tones(
    write_file: WriteFile, process: Process, tmp_path: Path, kind: str
) -> None:
    """Float and signed TIFF samples are scaled to 8 bits, not cast as they are."""
    result = process(write_file(f"{kind}.tif", _half_bright_tiff(kind)))
    assert result.status is Status.DONE, result.message
    thumb = np.asarray(open_variant(tmp_path / "out", result, "thumb").convert("L"))
    assert thumb[:, :24].mean() <= 2
    assert abs(thumb[:, 40:].mean() - 200) <= 3


def _full_range_tiff(kind: str) -> bytes:
    """A grey TIFF of three bands of columns: the lowest value, zero, the highest."""
    ranges = {
        "signed-16-bit": (-32768, 32767, np.int16),
        "float-minus-1-to-1": (-1.0, 1.0, np.float32),
    }
    low, high, dtype = ranges[kind]
    samples = np.zeros((48, 96), dtype)
    samples[:, :32] = low
    samples[:, 64:] = high
    return pyvips.Image.new_from_array(samples).tiffsave_buffer()


@pytest.mark.parametrize("kind", ["signed-16-bit", "float-minus-1-to-1"])
def test_negative_tiff_samples_kept(
    write_file: WriteFile, process: Process, tmp_path: Path, kind: str
) -> None:
    """Negative samples are scaled into the tones, not cut to black."""
    result = process(write_file(f"{kind}.tif", _full_range_tiff(kind)))
    assert result.status is Status.DONE, result.message
    thumb = np.asarray(open_variant(tmp_path / "out", result, "thumb").convert("L"))
    assert thumb[:, :24].mean() <= 2
    assert abs(thumb[:, 40:56].mean() - 128) <= 3
    assert thumb[:, 72:].mean() >= 253


def test_tiff_extra_samples_dropped(
    write_file: WriteFile, process: Process, tmp_path: Path
) -> None:
    """A 5-sample TIFF keeps its first three samples as RGB."""
    pixels = np.zeros((48, 64, 5), np.uint8)
    pixels[..., 0] = 200
    result = process(
        write_file("five.tif", pyvips.Image.new_from_array(pixels).tiffsave_buffer())
    )
    assert result.status is Status.DONE, result.message
    thumb = open_variant(tmp_path / "out", result, "thumb").convert("RGB")
    red, green, blue = thumb.getpixel((10, 10))
    assert abs(red - 200) <= 3
    assert green <= 3
    assert blue <= 3


def test_double_tiff_named_undecodable(write_file: WriteFile, process: Process) -> None:
    """64-bit float samples, which libvips cannot read, get their own reason."""
    samples = np.linspace(0, 1, 48 * 64).reshape(48, 64)
    tiff = pyvips.Image.new_from_array(samples).tiffsave_buffer()
    result = process(write_file("double.tif", tiff))
    assert result.reason is Reason.DECODE_FAILED, result.message
    assert "64-bit floating point" in (result.message or "")


def test_png_text_bomb_warning_plain(write_file: WriteFile, process: Process) -> None:
    """A zTXt chunk over Pillow's limit gets a warning in plain words."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), "red").save(buffer, "PNG")
    png = buffer.getvalue()
    bomb = zlib.compress(b"A" * 3 * 2**20)
    data = png[:33] + png_chunk(b"zTXt", b"Comment\x00\x00" + bomb) + png[33:]
    result = process(write_file("text-bomb.png", data))
    assert result.status is Status.DONE, result.message
    (warning,) = result.warnings
    assert "decompresses to more than Pillow reads" in warning
    assert "MAX_TEXT_CHUNK" not in warning


def test_large_allowed_png_no_bomb_warning() -> None:
    """A header under validate.max_pixels but over Pillow's limit reads cleanly."""
    width, height = 10_000, 9_999
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    header = Header(
        format="png", width=width, height=height, bands=1, bit_depth=8, pages=1,
        orientation=1, progressive=False, interpretation="b-w",
    )  # fmt: skip
    fields, warnings = read_metadata(data, header, "0" * 64)
    assert fields["width"] == width
    # The file contains no pixel data, which only the EXIF reader notices.
    assert not [text for text in warnings if "decompression bomb" in text]


@pytest.mark.parametrize("odd", [np.inf, -np.inf, np.nan])
def test_float_tiff_odd_sample_ignored(
    write_file: WriteFile, process: Process, tmp_path: Path, odd: float
) -> None:
    """One infinite or NaN sample neither sets the range nor blacks out the image."""
    samples = (_half_bright_grey() / 255).astype(np.float32)
    samples[0, 0] = odd
    result = process(
        write_file("odd.tif", pyvips.Image.new_from_array(samples).tiffsave_buffer())
    )
    assert result.status is Status.DONE, result.message
    thumb = np.asarray(open_variant(tmp_path / "out", result, "thumb").convert("L"))
    assert abs(thumb[:, 40:].mean() - 200) <= 3


@pytest.mark.parametrize(
    ("low", "high", "middle"),
    [
        # Linear light in these ranges: the middle is 0.5, which is 188 in sRGB.
        (0.0, 1.0, 188),
        (-1.0, 1.0, 188),
        # Otherwise the samples are sRGB values.
        (0.0, 255.0, 128),
    ],
)
def test_float_rgb_tiff_ranges(
    write_file: WriteFile,
    process: Process,
    tmp_path: Path,
    low: float,
    high: float,
    middle: int,
) -> None:
    """Float RGB TIFFs are scaled by their range like grey ones, in linear light."""
    ramp = np.tile(np.linspace(low, high, 256, dtype=np.float32), (16, 1))
    samples = np.stack([ramp] * 3, axis=2)
    result = process(
        write_file("rgb.tif", pyvips.Image.new_from_array(samples).tiffsave_buffer())
    )
    assert result.status is Status.DONE, result.message
    large = np.asarray(open_variant(tmp_path / "out", result, "large").convert("L"))
    assert large[8, 0] <= 2
    assert large[8, 255] >= 253
    # Column 128 of 256 is the ramp's value 128/255 of the way along.
    assert abs(int(large[8, 128]) - middle) <= 4
