"""Reference job in plain pyvips: the fastest way we know to make three variants.

For each input JPEG, ``thumbnail`` runs once to 2048 px on the long edge, with
``size="down"`` so that nothing is enlarged. libvips applies the EXIF orientation
while thumbnailing. That result is kept in memory, 1024 px is derived from it and
256 px from the 1024 px image, and all three are saved as JPEG quality 85. The EXIF
block is read with Pillow, as a metadata stage would. Worker processes each handle whole images, because
processes across images scale better than libvips threads inside one image.

``--timings FILE`` writes each photo's processing time and the time at which
its worker finished it, in seconds since ``main`` started, as JSON in the shape
of ``imgflow run --report``:
``{"images": [{"source": ..., "seconds": ..., "finished_seconds": ...}]}``.

Usage: python benchmarks/ref_pyvips.py --out DIR [--workers N] [--timings FILE] FILE...
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyvips
from PIL import Image
from ref_harness import run_reference

VARIANTS = (("large", 2048), ("medium", 1024), ("thumb", 256))
JPEG_QUALITY = 85


def configure_libvips() -> None:
    """Tune libvips for one image per process, as a worker would be run."""
    # With one process per core, extra libvips threads only compete for it.
    pyvips.concurrency_set(1)
    # Each file is opened once, so the operation cache would only hold memory.
    pyvips.cache_set_max(0)


def process(path_text: str, out_dir_text: str) -> int:
    """Write the three variants of one photo and return its EXIF tag count."""
    path = Path(path_text)
    out_dir = Path(out_dir_text)

    image = pyvips.Image.thumbnail(path_text, VARIANTS[0][1], size="down")
    for name, edge in VARIANTS:
        if edge != VARIANTS[0][1]:
            image = image.thumbnail_image(edge, size="down")
        # Render once into memory, so the next, smaller variant resizes these
        # pixels instead of running the decode and resize again.
        image = image.copy_memory()
        image.jpegsave(str(out_dir / f"{path.stem}_{name}.jpg"), Q=JPEG_QUALITY)

    with Image.open(path) as source:
        return len(source.getexif())


def main(argv: list[str] | None = None) -> int:
    return run_reference(
        __doc__.splitlines()[0], process, argv, configure=configure_libvips
    )


if __name__ == "__main__":
    sys.exit(main())
