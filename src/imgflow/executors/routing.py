"""Routing: what hybrid and auto read of an image before a worker takes it.

Routing reads the signature and the header segments of a file, in the
coordinating process, and decodes nothing. Its result only sorts photos
into small ones, batched and dispatched first, and the rest: the worker
validates every image in full, and renders a photo that does not qualify
for Pillow with libvips. So a file routing cannot read goes to libvips,
which rejects it with a named reason.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterator
from typing import IO

import pyvips
from PIL import ExifTags, Image

from imgflow.config import PipelineConfig
from imgflow.engines import pillow
from imgflow.records import Header, Source
from imgflow.stages.validate import SNIFF_BYTES, header_of, sniff_format

# Measured on 2 cores with libjpeg-turbo 3 (Pillow 13) and libvips 8.18 by
# benchmarks/hybrid_threshold.py. Pillow renders the three default variants
# faster below about 0.46 MP: 1.2x faster at 0.3 MP, on a par at 0.5 MP and
# 1.5x slower at 1 MP. The limit keeps 800 x 600 photos on the fast path.
# NOTE: that was before the fast path checked each scan with libvips (about
# 2.4 ms for 0.3 MP), and with the check libvips is ahead at every size. By
# default libvips now renders both classes, and the limit only decides which
# photos are batched and share the worker kept for small ones. That choice
# has not been measured on its own.
DEFAULT_SMALL_PIXELS = 480_000

# Pillow's JPEG modes, named as libvips names their interpretation.
_JPEG_INTERPRETATIONS = {"L": "b-w", "RGB": "srgb", "CMYK": "cmyk"}


@contextlib.contextmanager
def _open_regular(path: str) -> Iterator[IO[bytes] | None]:
    """Open `path` for reading if it is a regular file, else yield None.

    The open does not block, so a FIFO or a device never stalls routing.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    with os.fdopen(descriptor, "rb") as handle:
        yield handle if stat.S_ISREG(os.fstat(descriptor).st_mode) else None


def peek_header(path: str) -> Header | None:
    """Read the header of a regular file, or None if routing cannot read it.

    A JPEG's header is parsed by Pillow, in 70 us against 315 us for
    libvips on a 2-core machine, because the coordinating process routes
    every image. Other formats are parsed by libvips.
    """
    with _open_regular(path) as handle:
        if handle is None:
            return None
        try:
            fmt = sniff_format(handle.read(SNIFF_BYTES))
            if fmt is None:
                return None
            handle.seek(0)
            if fmt == "jpeg":
                return _jpeg_header(handle)
            source = pyvips.Source.new_from_descriptor(handle.fileno())
            image = pyvips.Image.new_from_source(source, "", access="sequential")
            return header_of(image, fmt)
        # Routing guesses: any failure, such as Pillow's DecompressionBombError
        # for a header that claims too many pixels, sends the file to libvips.
        except Exception:  # noqa: BLE001
            return None


def _jpeg_header(handle: IO[bytes]) -> Header | None:
    # Malformed EXIF is reported when the image is processed, not here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(handle, formats=["JPEG"]) as image:
            interpretation = _JPEG_INTERPRETATIONS.get(image.mode)
            if interpretation is None:
                return None
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            return Header(
                format="jpeg",
                width=image.width,
                height=image.height,
                bands=len(image.getbands()),
                bit_depth=8,  # Pillow opens 8-bit JPEGs only.
                # libvips reads the first image of an MPO, as a plain JPEG.
                pages=1,
                orientation=orientation if 1 <= orientation <= 8 else 1,
                progressive=bool(image.info.get("progressive")),
                interpretation=interpretation,
                has_profile="icc_profile" in image.info,
            )


# A progressive JPEG's scans are decoded in several passes over its
# coefficients. In one hybrid run here, a 12 MP progressive photo took 1.7
# times as long as a baseline one.
_PROGRESSIVE_COST = 1.7


def relative_cost(header: Header | None) -> float:
    """Return a rough cost of rendering an image, so the longest start first.

    Decoding dominates and grows with the source's pixels. Only the order
    of the costs matters. An unreadable header costs nothing, because
    validation most likely rejects such a file in milliseconds.
    """
    if header is None:
        return 0.0
    cost = float(header.pixels)
    return cost * _PROGRESSIVE_COST if header.progressive else cost


def is_small_photo(
    source: Source,
    header: Header,
    config: PipelineConfig,
    small_pixels: int = DEFAULT_SMALL_PIXELS,
) -> bool:
    """True when a source with this header goes in hybrid's small batches.

    Only photos that the Pillow engine could also render count, so that
    `--small-engine pillow` routes the same photos.
    """
    return (
        header.pixels <= small_pixels
        and pillow.can_render(header, config)
        # A source whose size is unknown (-1) fails this test too.
        and pillow.has_photo_density(source.size, header)
    )
