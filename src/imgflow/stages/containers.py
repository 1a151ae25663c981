"""Container walks: where a GIF or TIFF file's structure ends early, what
is wrong with a PNG's chunks, and the canvas a WebP file declares.

Each walk reads the file's blocks or directories as bytes and decodes no
pixels, so a cut file is found in well under a millisecond for most files.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple


def gif_frame_extent(data: bytes, max_frames: int = 10_000) -> tuple[int, int]:
    """Return the largest (right, bottom) edge any GIF frame descriptor claims.

    A GIF's logical screen may declare 32x32 while a frame claims 65535x65535;
    decoders size their buffers from the frame, so the frame counts. Only
    block headers are read: the walk skips every data sub-block unread.
    """
    if len(data) < 13:
        return 0, 0
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    position = 13
    if data[10] & 0x80:
        position += 3 * (2 << (data[10] & 0x07))

    def skip_sub_blocks(at: int) -> int:
        while at < len(data) and data[at] != 0:
            at += data[at] + 1
        return at + 1

    frames = 0
    while position < len(data) and frames < max_frames:
        marker = data[position]
        if marker == 0x2C and position + 10 <= len(data):
            left, top, frame_w, frame_h = (
                int.from_bytes(data[position + i : position + i + 2], "little")
                for i in (1, 3, 5, 7)
            )
            width = max(width, left + frame_w)
            height = max(height, top + frame_h)
            packed = data[position + 9]
            position += 10
            if packed & 0x80:
                position += 3 * (2 << (packed & 0x07))
            position = skip_sub_blocks(position + 1)
            frames += 1
        elif marker == 0x21:
            position = skip_sub_blocks(position + 2)
        else:
            break
    return width, height


def gif_truncation(data: bytes) -> str | None:
    """Describe where a GIF ends inside a block, or return None if no block is cut.

    A GIF that ends after a whole block but lacks its trailer byte (0x3B) is
    accepted, because many real GIFs lack it. Bytes that start no known
    block are damage for the decoder to judge, not a cut, so the walk stops
    there and returns None.
    NOTE: a cut that falls exactly between two blocks looks the same as a
    missing trailer, so such a file passes with the frames before the cut.
    """
    size = len(data)
    if size < 13:
        return (
            f"gif logical screen descriptor ends at byte 13 "
            f"but the file has {size:,} bytes"
        )
    position = 13
    if data[10] & 0x80:
        position += 3 * (2 << (data[10] & 0x07))
        if position > size:
            return (
                f"gif global color table ends at byte {position:,} "
                f"but the file has {size:,} bytes"
            )

    frames = 0
    while position < size:
        marker = data[position]
        if marker == 0x3B:
            return None
        if marker == 0x21:
            block = f"extension block at byte {position:,}"
            # The extension label precedes the data sub-blocks.
            end = _gif_sub_blocks_end(data, position + 2)
        elif marker == 0x2C:
            frames += 1
            problem = _gif_image_header_problem(data, position, frames)
            if problem is not None:
                return problem
            block = f"frame {frames} image data"
            end = _gif_sub_blocks_end(data, _gif_image_data_start(data, position))
        else:
            return None
        if end > size:
            return f"gif {block} ends at byte {end:,} or later but the file has {size:,} bytes"
        position = end

    if frames == 0:
        return f"gif data ends at byte {size:,} before the first image"
    return None


def _gif_image_data_start(data: bytes, descriptor: int) -> int:
    """Return the offset of the first data sub-block of the image at `descriptor`.

    The 10-byte image descriptor, an optional local color table and one
    byte of LZW minimum code size come first.
    """
    packed = data[descriptor + 9]
    start = descriptor + 10
    if packed & 0x80:
        start += 3 * (2 << (packed & 0x07))
    return start + 1


def _gif_image_header_problem(data: bytes, descriptor: int, frame: int) -> str | None:
    size = len(data)
    descriptor_end = descriptor + 10
    if descriptor_end > size:
        return (
            f"gif frame {frame} image descriptor ends at byte {descriptor_end:,} "
            f"but the file has {size:,} bytes"
        )
    # The LZW minimum code size byte is reported with the data sub-blocks.
    table_end = _gif_image_data_start(data, descriptor) - 1
    if table_end > size:
        return (
            f"gif frame {frame} local color table ends at byte {table_end:,} "
            f"but the file has {size:,} bytes"
        )
    return None


def _gif_sub_blocks_end(data: bytes, position: int) -> int:
    """Return the offset just past the zero-length block ending a sub-block chain.

    When the chain is cut, the result lies past the end of `data` and is the
    least length the file would need.
    """
    while position < len(data) and data[position] != 0:
        position += data[position] + 1
    return position + 1


# Byte size of one value of each TIFF field type, BigTIFF's types 16 to 18
# included.
_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
# `struct` codes of the unsigned integer types that may hold offsets and counts.
_TIFF_UNSIGNED_CODES = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
# Tags of the image data offsets, with the tag of their byte counts and the
# name of one piece of data.
_TIFF_DATA_TAGS = {273: (279, "strip"), 324: (325, "tile")}
# SubIFDs hold more images of a page, such as reduced resolutions.
_TIFF_SUB_IFDS_TAG = 330
# Bound on the IFDs walked, so that a file of many tiny IFDs stays fast.
# NOTE: IFDs past this many are not checked.
_TIFF_MAX_IFDS = 65_536


class _MalformedTiff(ValueError):
    """Raised when a TIFF header is damaged in a way that is not a cut."""


class _TiffEntry(NamedTuple):
    """One IFD entry: field type, value count, and where its values lie."""

    field_type: int
    value_count: int
    value_offset: int
    length: int


def tiff_truncation(data: bytes) -> str | None:
    """Describe where a TIFF's IFDs, tag values, strips or tiles pass its end.

    Walks the IFD of every page and every SubIFD they list, in classic TIFF
    and BigTIFF of either byte order. Returns None when everything lies
    inside the file, and also when the header is damaged in another way,
    which leaves the judgement to libvips.
    NOTE: EXIF, GPS and interoperability IFDs are not walked, because damage
    there is common in whole files and costs no pixels.
    """
    try:
        return _TiffReader(data).truncation()
    except (_MalformedTiff, struct.error):
        return None


class _TiffReader:
    """Reader of the IFDs of a TIFF held in memory, which checks each offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.order = "<" if data[:2] == b"II" else ">"
        # BigTIFF widens the entry count, the value count, the value field
        # and every offset to 8 bytes.
        self.big = data[2:4] in (b"+\x00", b"\x00+")
        self.offset_code = "Q" if self.big else "I"
        self.offset_size = 8 if self.big else 4
        self.entry_count_code = "Q" if self.big else "H"
        self.entry_count_size = 8 if self.big else 2
        self.entry_size = 20 if self.big else 12

    def read(self, code: str, offset: int) -> int:
        value: int = struct.unpack_from(self.order + code, self.data, offset)[0]
        return value

    def truncation(self) -> str | None:
        header_size = 16 if self.big else 8
        if self.size < header_size:
            return (
                f"tiff header ends at byte {header_size} "
                f"but the file has {self.size:,} bytes"
            )
        if self.big and (self.read("H", 4) != 8 or self.read("H", 6) != 0):
            raise _MalformedTiff("BigTIFF offsets are not 8 bytes")
        # The offset of the first IFD ends the header.
        first = self.read(self.offset_code, header_size - self.offset_size)

        # Each item: IFD offset, name for messages, page number (None for a
        # SubIFD, whose next-IFD chain is not followed).
        pending: list[tuple[int, str, int | None]] = [(first, "page 1", 1)]
        visited: set[int] = set()
        while pending:
            offset, name, page = pending.pop(0)
            if offset == 0 or offset in visited:
                continue
            if len(visited) >= _TIFF_MAX_IFDS:
                return None
            visited.add(offset)
            problem, entries, next_offset = self.read_ifd(offset, name)
            if problem is None:
                problem = self.value_problem(entries, name)
            if problem is None:
                problem = self.image_data_problem(entries, name)
            if problem is not None:
                return problem
            if page is not None:
                pending.append((next_offset, f"page {page + 1}", page + 1))
            sub_ifds = entries.get(_TIFF_SUB_IFDS_TAG)
            sub_offsets = self.integers(sub_ifds) if sub_ifds else None
            for index, sub_offset in enumerate(sub_offsets or (), 1):
                pending.append((sub_offset, f"{name} SubIFD {index}", None))
        return None

    def read_ifd(
        self, offset: int, name: str
    ) -> tuple[str | None, dict[int, _TiffEntry], int]:
        """Parse the IFD at `offset` into entries by tag and the next IFD's offset.

        The first item is a message when the IFD itself passes the file end.
        """
        count_end = offset + self.entry_count_size
        if count_end > self.size:
            return self.past_end(f"{name} IFD", count_end), {}, 0
        count = self.read(self.entry_count_code, offset)
        table_end = count_end + count * self.entry_size + self.offset_size
        if table_end > self.size:
            return self.past_end(f"{name} IFD", table_end), {}, 0

        entries: dict[int, _TiffEntry] = {}
        value_count_code = "Q" if self.big else "I"
        for at in range(count_end, table_end - self.offset_size, self.entry_size):
            tag = self.read("H", at)
            type_ = self.read("H", at + 2)
            value_count = self.read(value_count_code, at + 4)
            value_field = at + 4 + self.offset_size
            type_size = _TIFF_TYPE_SIZES.get(type_)
            if type_size is None:
                # An entry of an unknown type has no known length.
                continue
            length = type_size * value_count
            if length <= self.offset_size:
                value_offset = value_field
            else:
                value_offset = self.read(self.offset_code, value_field)
            entries[tag] = _TiffEntry(type_, value_count, value_offset, length)
        next_offset = self.read(self.offset_code, table_end - self.offset_size)
        return None, entries, next_offset

    def value_problem(self, entries: dict[int, _TiffEntry], name: str) -> str | None:
        for tag, entry in entries.items():
            end = entry.value_offset + entry.length
            if end > self.size:
                return self.past_end(f"{name} tag {tag} value", end)
        return None

    def image_data_problem(
        self, entries: dict[int, _TiffEntry], name: str
    ) -> str | None:
        for offsets_tag, (counts_tag, piece) in _TIFF_DATA_TAGS.items():
            if offsets_tag not in entries:
                continue
            offsets = self.integers(entries[offsets_tag])
            counts_entry = entries.get(counts_tag)
            counts = self.integers(counts_entry) if counts_entry else None
            if offsets is None or (counts_entry is not None and counts is None):
                raise _MalformedTiff(
                    f"tag {offsets_tag} or {counts_tag} is not of an integer type"
                )
            if counts is None:
                # Without byte counts only the start of each piece is known.
                for index, start in enumerate(offsets, 1):
                    if start >= self.size:
                        return (
                            f"tiff {name} {piece} {index} starts at byte {start:,} "
                            f"but the file has {self.size:,} bytes"
                        )
                continue
            # Pieces listed in only one of the two tags go unchecked.
            pieces = zip(offsets, counts, strict=False)
            for index, (start, length) in enumerate(pieces, 1):
                if length > 0 and start + length > self.size:
                    return self.past_end(f"{name} {piece} {index}", start + length)
        return None

    def integers(self, entry: _TiffEntry) -> tuple[int, ...] | None:
        """Return the values of an entry of an unsigned integer type, else None."""
        code = _TIFF_UNSIGNED_CODES.get(entry.field_type)
        if code is None:
            return None
        values: tuple[int, ...] = struct.unpack_from(
            f"{self.order}{entry.value_count}{code}", self.data, entry.value_offset
        )
        return values

    def past_end(self, part: str, end: int) -> str:
        return f"tiff {part} ends at byte {end:,} but the file has {self.size:,} bytes"


def png_problem(data: bytes) -> str | None:
    """Describe the first structural fault of a PNG, or return None.

    Walks the chunks after the signature, checking the CRC of each critical
    one, that IHDR comes first with a non-zero size, and that some IDAT
    chunk contains image data. libvips reports these faults only as a failed
    load, and decodes an IDAT whose CRC fails as if it were sound.
    """
    position = 8
    seen_data = False
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        # A damaged type may hold unprintable bytes, shown as hex instead.
        name = kind.decode("ascii") if kind.isalpha() else f"0x{kind.hex()}"
        end = position + 12 + length
        if end > len(data):
            return (
                f"chunk {name} at byte {position:,} needs {length:,} bytes, "
                f"past the end of the file ({len(data):,} bytes)"
            )
        stored = int.from_bytes(data[end - 4 : end], "big")
        # Like libpng, only critical chunks (upper-case first letter) must
        # pass: a damaged text or colour chunk leaves the pixels intact.
        critical = kind[:1].isupper() or not kind.isalpha()
        if critical and zlib.crc32(data[position + 4 : end - 4]) != stored:
            return f"chunk {name} at byte {position:,} fails its CRC check"
        if position == 8 and kind != b"IHDR":
            return f"the first chunk is {name}, not IHDR"
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack_from(">II", data, position + 8)
            if width == 0 or height == 0:
                return f"IHDR gives a size of {width}x{height} pixels"
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            break
        position = end
    if not seen_data:
        return "no IDAT chunk, so the file contains no image data"
    return None


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """Return the width and height a WebP file's first chunk declares.

    libwebp rejects a canvas over 16,383 pixels a side before libvips can
    report its size, so a bomb would otherwise look like a damaged file.
    Reads the VP8X canvas, or the frame header of a simple lossy (VP8) or
    lossless (VP8L) file. Returns None when the chunk is too short or
    unknown.
    """
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind, payload = data[12:16], data[20:30]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(payload[4:7], "little")
        height = 1 + int.from_bytes(payload[7:10], "little")
        return width, height
    if kind == b"VP8L" and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        # The top two bits of each 16-bit field are an upscaling hint.
        width = int.from_bytes(payload[6:8], "little") & 0x3FFF
        height = int.from_bytes(payload[8:10], "little") & 0x3FFF
        return width, height
    return None
