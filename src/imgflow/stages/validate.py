"""Validate stage: decide from the bytes whether an image may be decoded.

Nothing here decodes pixels. The format comes from the file signature (the
name and extension are ignored), and the size comes from the header that
libvips parses lazily, so a decompression bomb is turned away after reading a
few kilobytes of header, in milliseconds and with little memory.
"""

from __future__ import annotations

import re
import struct

import pyvips
from PIL import ExifTags, Image

from imgflow.config import PipelineConfig, ValidateConfig
from imgflow.errors import Reason, Rejected
from imgflow.records import Header
from imgflow.stages.containers import (
    gif_frame_extent,
    gif_truncation,
    png_problem,
    tiff_truncation,
    webp_canvas_size,
)

STAGE = "validate"

_ISO_BMFF_AVIF = {b"avif", b"avis"}
_ISO_BMFF_HEIC = {
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"mif1",
    b"msf1",
}

# Formats checked for a cut end before decoding, by `truncation_message`.
# JPEG is left to the decoder, which rejects a missing end itself.
_END_CHECKED_FORMATS = ("png", "webp", "gif", "tiff")

_BIT_DEPTH = {
    "uchar": 8,
    "char": 8,
    "ushort": 16,
    "short": 16,
    "uint": 32,
    "int": 32,
    "float": 32,
    "complex": 64,
    "double": 64,
    "dpcomplex": 128,
}


def _iso_bmff_format(head: bytes) -> str | None:
    if head[4:8] != b"ftyp" or len(head) < 16:
        return None
    box_size = int.from_bytes(head[0:4], "big")
    end = min(max(box_size, 16), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _ISO_BMFF_AVIF:
        return "avif"
    if brands & _ISO_BMFF_HEIC:
        return "heic"
    return None


# Value representations that follow the tag of an explicit-VR DICOM element.
_DICOM_VRS = {
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FD",
    b"FL",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"TM",
    b"UC",
    b"UI",
    b"UL",
    b"UN",
    b"UR",
    b"US",
    b"UT",
}


def _bare_dicom(head: bytes) -> bool:
    """Recognise a DICOM data set written without the 128-byte preamble.

    Such files start, within their first few bytes, with an element of
    group 0x0002 or 0x0008 followed by a VR code (explicit VR) or a short
    32-bit length (implicit VR).
    """
    for offset in range(4):
        element = head[offset : offset + 8]
        if len(element) < 8 or element[0:2] not in (b"\x02\x00", b"\x08\x00"):
            continue
        if element[4:6] in _DICOM_VRS:
            return True
        if offset == 0 and 0 < int.from_bytes(element[4:8], "little") < 1024:
            return True
    return False


# Enough of a file's start for `sniff_format`: DICOM's preamble and prefix
# take 132 bytes.
SNIFF_BYTES = 256


def sniff_format(head: bytes) -> str | None:
    """Name the image format from the first bytes of a file, or return None.

    Formats that imgflow never decodes (BMP, PDF, DICOM, JPEG XL) are named
    too, so that a rejection can say which format was found. DICOM goes
    first: its 128-byte preamble may hold another format's signature.
    """
    if head[128:132] == b"DICM" or _bare_dicom(head):
        return "dicom"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if (iso := _iso_bmff_format(head)) is not None:
        return iso
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL "):
        return "jxl"
    if head[:2] == b"BM":
        return "bmp"
    if head[:5] == b"%PDF-":
        return "pdf"
    return None


def ends_cleanly(fmt: str, data: bytes) -> bool | None:
    """Check that the file ends with its format's end marker.

    Returns None for a format without a reliable end marker. TIFF has none,
    and many real GIFs lack their trailer byte, so `truncation_message` walks
    the structure of both instead. Trailing padding after the marker, which
    some cameras write, is allowed.
    """
    tail = data[-4096:].rstrip(b"\x00\xff\r\n ")
    if fmt == "jpeg":
        # The EOI marker is FF D9; stripping FF padding may have eaten its FF.
        return tail.endswith(b"\xd9") and b"\xff\xd9" in data[-4096:]
    if fmt == "png":
        # The whole IEND chunk: zero length, type, CRC. Data after it is allowed.
        return b"\x00\x00\x00\x00IEND\xaeB`\x82" in data[-4096:]
    if fmt == "webp":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return None


def truncation_message(fmt: str, data: bytes) -> str | None:
    """Describe how `data` ends before its format's structure does, or return None.

    It reads headers and block lengths only and decodes no pixels.
    """
    if fmt == "gif":
        return gif_truncation(data)
    if fmt == "tiff":
        return tiff_truncation(data)
    if ends_cleanly(fmt, data) is False:
        if fmt == "webp":
            declared = int.from_bytes(data[4:8], "little") + 8
            return (
                f"webp data ends early: its RIFF header gives {declared:,} bytes, "
                f"the file has {len(data):,}"
            )
        return f"{fmt} data ends early: the end marker is missing after {len(data):,} bytes"
    return None


# libheif's words when a box points past the end of the file.
_HEIF_CUT = re.compile(r"Unexpected end of file|Cannot read full", re.I)


def _heif_cut(fmt: str, detail: str) -> bool:
    """True when libheif's `detail` shows a HEIF or AVIF file that ends early.

    These formats have no end marker, so only the decoder can find the cut.
    """
    return fmt in ("avif", "heic") and _HEIF_CUT.search(detail) is not None


def undecodable_reason(fmt: str, data: bytes, detail: str = "") -> Reason:
    """Choose between TRUNCATED and CORRUPT for data that failed to decode."""
    if truncation_message(fmt, data) is not None or _heif_cut(fmt, detail):
        return Reason.TRUNCATED
    return Reason.CORRUPT


def decode_failure(fmt: str, data: bytes, detail: str, *, stage: str) -> Rejected:
    """Build the rejection for data a decoder could not read.

    A truncation is described from the bytes, the same whichever engine
    found it; other damage keeps the decoder's own words.
    """
    message = truncation_message(fmt, data)
    if message is not None:
        return Rejected(Reason.TRUNCATED, message, stage=stage)
    if _heif_cut(fmt, detail):
        return Rejected(
            Reason.TRUNCATED, f"{fmt} data ends early: {detail}", stage=stage
        )
    return Rejected(
        Reason.CORRUPT,
        f"{fmt} decode failed: {_structure_problem(fmt, data) or detail}",
        stage=stage,
    )


def _structure_problem(fmt: str, data: bytes) -> str | None:
    """Name a fault found in the file's structure, which decoders may not report."""
    return png_problem(data) if fmt == "png" else None


def _valid_orientation(value: int | None) -> int:
    # Out-of-range tags (0 is common) mean "no rotation" to every viewer.
    return value if value is not None and 1 <= value <= 8 else 1


# ImageMagick writes a PNG's EXIF as hex digits in a text chunk named "Raw
# profile type exif". libvips keeps it as a comment and ignores its
# orientation, which Pillow applies.
_RAW_EXIF_PROFILE = re.compile(r"png-comment-\d+-Raw profile type exif")


def _raw_profile_orientation(image: pyvips.Image) -> int | None:
    """Return the orientation in an ImageMagick raw EXIF profile, if any."""
    for name in image.get_fields():
        if not _RAW_EXIF_PROFILE.fullmatch(name):
            continue
        # The text is "\nexif\n   LENGTH\nHEX DIGITS...", split over lines.
        lines = str(image.get(name)).strip().splitlines()
        try:
            data = bytes.fromhex("".join(lines[2:]))
            exif = Image.Exif()
            exif.load(data)
            value = exif.get(ExifTags.Base.Orientation)
        except (ValueError, SyntaxError, struct.error, OSError):
            return None  # Malformed: the metadata stage reports what it can.
        return value if isinstance(value, int) else None
    return None


# Lines libvips adds after a decoder's own message. They name no fault, and
# whether they come at all depends on the threads a process runs. A loader
# that probes past the end of its data logs a failed seek first.
_WRAPPER_LINE = re.compile(
    r": (load error|read error|unable to call \w+|unable to copy to memory"
    r"|bad seek to \d+)$"
)
# libheif puts its error code, such as (2.100), on a line of its own.
_ERROR_CODE_LINE = re.compile(r"^\(\d+\.\d+\)$")


def error_lines(exc: pyvips.Error) -> list[str]:
    """Return the distinct lines of a libvips error that name a fault, in order.

    When every line is one of libvips' own wrappers, those are returned.
    """
    lines: list[str] = []
    for line in (exc.detail or "").splitlines():
        line = line.strip()
        if lines and _ERROR_CODE_LINE.match(line):
            lines[-1] = f"{lines[-1]} {line}"
        elif line:
            lines.append(line)
    distinct = list(dict.fromkeys(lines))
    specific = [line for line in distinct if not _WRAPPER_LINE.search(line)]
    return specific or distinct or [exc.message]


def memory_source(data: bytes) -> pyvips.Source:
    """Return a libvips source that reads `data` without copying it.

    pyvips copies a bytes argument before each load, about 0.4 ms for the
    2.7 MB of a 12 MP photo. The caller keeps `data` alive until libvips
    has read it, because only the returned Python object refers to it.
    """
    return pyvips.Source.new_from_memory(data)


# libvips' TIFF loader raises this for a valid file whose sample format
# and size it has no reader for, such as 64-bit floats.
_UNSUPPORTED_SAMPLES = "samples out of range"


def read_header(data: bytes, fmt: str) -> Header:
    """Parse the header with libvips; no pixels are decoded."""
    try:
        image = pyvips.Image.new_from_source(
            memory_source(data), "", access="sequential"
        )
    except pyvips.Error as exc:
        detail = _structure_problem(fmt, data) or error_lines(exc)[-1]
        if fmt == "tiff" and _UNSUPPORTED_SAMPLES in detail:
            raise Rejected(
                Reason.DECODE_FAILED,
                "tiff samples of a kind libvips cannot decode, such as 64-bit "
                f"floating point: {detail}",
                stage=STAGE,
            ) from None
        reason = undecodable_reason(fmt, data, detail)
        raise Rejected(
            reason, f"{fmt} header could not be parsed: {detail}", stage=STAGE
        ) from None
    return header_of(image, fmt)


def header_of(image: pyvips.Image, fmt: str) -> Header:
    """Return the header facts of an image libvips has opened."""
    pages = int(image.get("n-pages")) if image.get_typeof("n-pages") else 1
    height = image.height
    if image.get_typeof("page-height"):
        height = int(image.get("page-height"))
    progressive = bool(image.get_typeof("interlaced") and image.get("interlaced"))
    oriented_on_load = True
    if image.get_typeof("orientation"):
        orientation = _valid_orientation(int(image.get("orientation")))
    elif fmt == "png":
        orientation = _valid_orientation(_raw_profile_orientation(image))
        oriented_on_load = orientation == 1
    else:
        orientation = 1
    return Header(
        format=fmt,
        width=image.width,
        height=height,
        bands=image.bands,
        bit_depth=_BIT_DEPTH.get(image.format, 8),
        pages=max(pages, 1),
        orientation=orientation,
        progressive=progressive,
        interpretation=image.interpretation,
        has_profile=bool(image.get_typeof("icc-profile-data")),
        oriented_on_load=oriented_on_load,
    )


def check_size(size: int, config: ValidateConfig) -> None:
    """Reject empty files and files over the byte limit, from their size alone."""
    if size == 0:
        raise Rejected(Reason.EMPTY_FILE, "file is empty (0 bytes)", stage=STAGE)
    if size > config.max_file_bytes:
        raise Rejected(
            Reason.FILE_TOO_LARGE,
            f"file is {size:,} bytes; the limit validate.max_file_bytes "
            f"is {config.max_file_bytes:,}",
            stage=STAGE,
        )


def validate(data: bytes, config: ValidateConfig) -> Header:
    """Check format, byte and pixel limits of an image held in memory.

    Cost: one signature match and a header parse; the pixels stay encoded.
    """
    check_size(len(data), config)
    fmt = sniff_format(data[:256])
    if fmt is None:
        raise Rejected(
            Reason.NOT_AN_IMAGE,
            f"no known image signature in the first bytes ({data[:8].hex(' ')})",
            stage=STAGE,
        )
    if fmt not in config.allowed_formats:
        raise Rejected(
            Reason.FORMAT_NOT_ALLOWED,
            f"format {fmt} is not in validate.allowed_formats "
            f"({', '.join(config.allowed_formats)})",
            stage=STAGE,
        )

    if fmt == "gif":
        _check_pixels(*gif_frame_extent(data), config)
    if fmt == "webp" and (canvas := webp_canvas_size(data)) is not None:
        _check_pixels(*canvas, config)
    if fmt in _END_CHECKED_FORMATS:
        # libvips raises no error for many of these cuts. A PNG or WebP
        # decoder stops at the last pixel row and never reads the lost end,
        # missing TIFF strips come out black, and a cut GIF loses frames.
        message = truncation_message(fmt, data)
        if message is not None:
            raise Rejected(Reason.TRUNCATED, message, stage=STAGE)
    problem = _structure_problem(fmt, data)
    if problem is not None:
        raise Rejected(Reason.CORRUPT, f"{fmt} {problem}", stage=STAGE)
    header = read_header(data, fmt)
    if header.width < 1 or header.height < 1:
        raise Rejected(
            Reason.DEGENERATE_SIZE,
            f"image is {header.width}x{header.height} pixels",
            stage=STAGE,
        )
    _check_pixels(header.width, header.height, config)
    return header


def _check_pixels(width: int, height: int, config: ValidateConfig) -> None:
    if width * height > config.max_pixels:
        raise Rejected(
            Reason.TOO_MANY_PIXELS,
            f"image is {width}x{height} = {width * height:,} pixels; "
            f"the limit validate.max_pixels is {config.max_pixels:,}",
            stage=STAGE,
        )


def check_kept_frames(header: Header, config: PipelineConfig) -> None:
    """Reject an animation whose kept frames hold more pixels than the limit.

    With transform.animation = "keep", every kept frame is decoded for the
    animated variants, so the pixel limit applies to all of them together.
    """
    keeps = config.transform.animation == "keep" and any(
        variant.format.animates for variant in config.variants.values()
    )
    if not keeps or header.pages < 2 or header.format not in ("gif", "webp"):
        return
    frames = min(header.pages, config.transform.max_frames)
    total = frames * header.pixels
    limit = config.validation.max_pixels
    if total > limit:
        raise Rejected(
            Reason.TOO_MANY_PIXELS,
            f"{frames} kept frames of {header.width}x{header.height} are "
            f"{total:,} pixels; the limit validate.max_pixels is {limit:,} "
            "(lower transform.max_frames or raise the limit)",
            stage=STAGE,
        )
