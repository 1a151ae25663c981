"""Reference job in plain Pillow: three JPEG variants per photo, as usually written.

For each input JPEG, ``draft`` lets libjpeg decode at the smallest DCT scale that
still covers 2048 px, and ``thumbnail`` reduces to 2048 px. Its ``reducing_gap``
makes large factors start with a fast box reduce. Then 1024 px is made from the
2048 px image and 256 px from the 1024 px one. ``exif_transpose`` runs on the 2048 px
image, where turning costs a quarter of what it costs at 12 MP. All three are
saved as JPEG quality 85, and the EXIF block is read as a metadata stage would.

``--timings FILE`` writes each photo's processing time and the time at which
its worker finished it, in seconds since ``main`` started, as JSON in the shape
of ``imgflow run --report``:
``{"images": [{"source": ..., "seconds": ..., "finished_seconds": ...}]}``.

Usage: python benchmarks/ref_pillow.py --out DIR [--workers N] [--timings FILE] FILE...
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageOps
from ref_harness import run_reference

VARIANTS = (("large", 2048), ("medium", 1024), ("thumb", 256))
JPEG_QUALITY = 85
REDUCING_GAP = 2.0


def process(path_text: str, out_dir_text: str) -> int:
    """Write the three variants of one photo and return its EXIF tag count."""
    path = Path(path_text)
    out_dir = Path(out_dir_text)

    with Image.open(path) as source:
        exif_tags = len(source.getexif())
        largest = VARIANTS[0][1]
        source.draft("RGB", (largest, largest))
        image = source.convert("RGB") if source.mode != "RGB" else source.copy()

    image.thumbnail((largest, largest), reducing_gap=REDUCING_GAP)
    ImageOps.exif_transpose(image, in_place=True)
    for name, edge in VARIANTS:
        image.thumbnail((edge, edge), reducing_gap=REDUCING_GAP)
        image.save(out_dir / f"{path.stem}_{name}.jpg", "JPEG", quality=JPEG_QUALITY)
    return exif_tags


def main(argv: list[str] | None = None) -> int:
    return run_reference(__doc__.splitlines()[0], process, argv)


if __name__ == "__main__":
    sys.exit(main())
