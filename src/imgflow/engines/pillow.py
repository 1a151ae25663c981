"""Pillow imaging engine, the fast path for small baseline JPEGs.

Cost model: `draft` makes libjpeg decode at 1/2, 1/4 or 1/8 scale, the
smallest that still covers the largest variant; the variants are then
resized in a cascade, each from the smallest earlier result that covers it.
On photos under about a megapixel this beats libvips, whose per-image setup
dominates there; on larger photos libvips wins by far.

It takes only what it renders the same way as the libvips engine: 8-bit
baseline JPEG, RGB or grey, no colour profile (so sRGB), one frame, and
JPEG, PNG or WebP variants. `can_render` says whether an image qualifies.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from imgflow.config import OutputFormat, PipelineConfig, Variant
from imgflow.errors import Reason, StageFailed
from imgflow.records import Header
from imgflow.stages.transform import (
    STAGE,
    Rendered,
    VariantPlan,
    base_size,
    encoding_key,
)
from imgflow.stages.validate import decode_failure

_FORMATS = {
    OutputFormat.JPEG: "JPEG",
    OutputFormat.PNG: "PNG",
    OutputFormat.WEBP: "WEBP",
}

# LANCZOS after a box reduction by up to this factor: within 1-2 grey levels
# of a full LANCZOS resize at a fraction of the cost.
_REDUCING_GAP = 3.0


def can_render(header: Header, config: PipelineConfig) -> bool:
    """True when this engine renders the image with the libvips engine's rules."""
    return (
        header.format == "jpeg"
        and not header.progressive
        and header.pages == 1
        and header.bit_depth == 8
        and header.interpretation in ("srgb", "b-w")
        and not header.has_profile
        and all(variant.format in _FORMATS for variant in config.variants.values())
    )


# Below this many bytes per declared pixel, a JPEG goes to libvips. Photos
# at quality 75 to 95 carry about 0.1 to 0.5 bytes per pixel.
MIN_BYTES_PER_PIXEL = 0.02


def has_photo_density(size: int, header: Header) -> bool:
    """True when a JPEG's file size is plausible for the pixels it declares.

    A file below `MIN_BYTES_PER_PIXEL` is either very smooth, where libvips
    costs little more, or lacks scan data, which Pillow pads with grey
    without an error while libvips rejects it as truncated.
    """
    return size >= header.pixels * MIN_BYTES_PER_PIXEL


def _decode(data: bytes, header: Header, size: tuple[int, int]) -> Image.Image:
    image: Image.Image = Image.open(io.BytesIO(data))
    mode = "L" if header.interpretation == "b-w" else "RGB"
    # draft works in stored orientation, before the EXIF rotation.
    stored = size if header.orientation < 5 else (size[1], size[0])
    image.draft(mode, stored)
    # Data cut short raises instead of being padded with grey. Corrupt scan
    # data, or data that ends early at an intact end marker, decodes without
    # an error: callers check the scan with `vips.jpeg_scan_is_clean` first.
    image.load()
    if header.orientation != 1:
        # exif_transpose copies the image even when there is nothing to do.
        image = ImageOps.exif_transpose(image)
    return image if image.mode == mode else image.convert(mode)


def _shape(source: Image.Image, plan: VariantPlan) -> Image.Image:
    image = source
    if image.size != plan.resize:
        image = image.resize(
            plan.resize, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP
        )
    if plan.crop is not None:
        left, top, width, height = plan.crop
        image = image.crop((left, top, left + width, top + height))
    return image


def _encode(image: Image.Image, variant: Variant, exif: bytes | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if exif is not None:
        options["exif"] = exif
    if variant.format is OutputFormat.JPEG:
        options.update(quality=variant.quality, progressive=variant.progressive)
    elif variant.format is OutputFormat.WEBP:
        options.update(quality=variant.quality, method=variant.effort)
    else:
        options.update(interlace=variant.progressive)
    image.save(buffer, _FORMATS[variant.format], **options)
    return buffer.getvalue()


def render(
    data: bytes,
    header: Header,
    plans: list[VariantPlan],
    config: PipelineConfig,
    exif: bytes | None,
) -> list[Rendered]:
    """Decode at reduced scale once and encode every planned variant.

    Memory: the decoded base plus the variants made so far, all smaller
    than the source. `exif` is the block to embed, from `output_exif`.
    """
    width, height = header.display_size
    try:
        with warnings.catch_warnings():
            # The metadata step records Pillow's warnings for this image.
            warnings.simplefilter("ignore")
            base = _decode(data, header, base_size(plans, width, height))
    except (OSError, ValueError, SyntaxError) as exc:
        raise decode_failure(header.format, data, str(exc), stage=STAGE) from None

    made: list[Image.Image] = [base]
    shaped: dict[str, Image.Image] = {}
    for plan in sorted(plans, key=lambda p: p.resize, reverse=True):
        # The smallest earlier image that still covers this plan's size.
        covering = [
            m for m in made if m.width >= plan.resize[0] and m.height >= plan.resize[1]
        ]
        source = min(covering, key=lambda m: m.width) if covering else base
        image = _shape(source, plan)
        shaped[plan.name] = image
        if plan.crop is None:
            made.append(image)

    rendered = []
    encodings: dict[tuple[object, ...], bytes] = {}
    for plan in plans:
        image = shaped[plan.name]
        try:
            # Variants that resolve to the same pixels and settings (medium
            # and large of a small photo) are encoded once.
            same = encoding_key(plan)
            if same not in encodings:
                encodings[same] = _encode(image, plan.variant, exif)
            encoded = encodings[same]
        except (OSError, ValueError) as exc:
            raise StageFailed(
                Reason.ENCODE_FAILED,
                f"{plan.variant.format.value} encode of variant {plan.name!r} failed: {exc}",
                stage=STAGE,
            ) from None
        rendered.append(
            Rendered(
                name=plan.name,
                data=encoded,
                width=image.width,
                height=image.height,
                format=plan.variant.format.value,
                suffix=plan.variant.format.suffix,
                engine="pillow",
            )
        )
    return rendered
