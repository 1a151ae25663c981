"""libvips imaging engine (through pyvips).

Cost model: `thumbnail_buffer` decodes once with shrink-on-load (JPEG at
1/2, 1/4 or 1/8 scale in the decoder, WebP and HEIF likewise), auto-rotates,
and converts to sRGB. That base is copied to memory, about
base_width x base_height x bands bytes (12 MB for a 2048x1536 RGB base), and
every variant is resized from it, so the source is decoded exactly once.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator

import pyvips

from imgflow.config import OutputConfig, OutputFormat, PipelineConfig, Variant
from imgflow.errors import Reason, Rejected, StageFailed
from imgflow.records import Header
from imgflow.stages.metadata import exif_for_output
from imgflow.stages.transform import (
    STAGE,
    Rendered,
    VariantPlan,
    base_size,
    encoding_key,
)
from imgflow.stages.validate import (
    decode_failure,
    error_lines,
    memory_source,
    undecodable_reason,
)

# A decode first runs with fail_on=warning. When libvips warns, the warning
# decides: data that ends before the image is complete (which libjpeg would
# pad with grey) is rejected as truncated, and any other damage is decoded
# again with libvips' default tolerance (fail_on=truncated), as before.
_STRICT = "fail_on=warning"
_TOLERANT = "fail_on=truncated"
# libjpeg's "premature end of data segment" and "premature end of JPEG
# file", and libpng's "not enough image data".
_DATA_MISSING = re.compile(r"premature end|not enough image data", re.I)
# Formats whose decoder fails the strict decode only on real damage, which
# the tolerant decode writes out black, striped or garbled. libtiff passes
# its warnings (unknown tags, for one) through without failing it, and
# libvips' GIF loader fails it on invalid frame data.
_DAMAGE_ON_STRICT_FAILURE = {"tiff", "gif"}
# libjpeg warnings that mean the compressed scan data itself is damaged.
# Others, such as stray bytes before a marker, are common in sound files.
_SCAN_DAMAGE = re.compile(r"bad Huffman code|bad arithmetic code|instead of RST")

# NOTE: the pyvips-binary wheel reads HEIF containers but ships no HEVC
# decoder, so HEIC pixels are decoded with pillow-heif instead.
_PILLOW_DECODED = {"heic"}


def configure_worker(threads: int | None) -> None:
    """Tune libvips for a long-lived worker: no operation cache, fixed threads."""
    pyvips.cache_set_max(0)
    if threads is not None:
        pyvips.concurrency_set(threads)


def jpeg_scan_is_clean(data: bytes) -> bool:
    """True when libjpeg decodes the whole scan of a JPEG without a warning.

    Pillow decodes corrupt or cut scan data without any warning, so the
    Pillow fast path takes only photos that pass this check. It decodes at
    full scale, about 2.4 ms for a 0.3 MP photo, because a scaled decode
    passes some zeroed scan bytes that the full decode reports as damaged.
    """
    try:
        image = pyvips.Image.jpegload_source(memory_source(data), fail_on="warning")
        image.copy_memory()
    except pyvips.Error:
        return False
    return True


def _error_detail(exc: pyvips.Error) -> str:
    """Return the last line of a libvips error that names a fault."""
    return error_lines(exc)[-1]


def _all_details(exc: pyvips.Error) -> str:
    """Join the lines of a libvips error that name a fault, the first cause first.

    libtiff can report several faults in a row, which together describe more.
    """
    return "; ".join(error_lines(exc))


def _decode_failure(header: Header, data: bytes, exc: Exception) -> Rejected:
    detail = _error_detail(exc) if isinstance(exc, pyvips.Error) else str(exc)
    return decode_failure(header.format, data, detail, stage=STAGE)


def _to_8bit_srgb(image: pyvips.Image) -> pyvips.Image:
    if image.bands > 4 and image.interpretation != "cmyk":
        # Extra samples past RGB and alpha have no colour meaning, and
        # libvips cannot convert or flatten such an image.
        image = image.extract_band(0, n=3).copy(interpretation="srgb")
    grey = image.interpretation in ("b-w", "grey16")
    if image.format != "uchar" or image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("b-w" if grey else "srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def _background(image: pyvips.Image, rgb: list[int]) -> list[float]:
    if image.bands - 1 >= 3:
        return [float(value) for value in rgb]
    # Rec. 709 luma of the background for grey images with alpha.
    return [0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]]


def _flatten(image: pyvips.Image, rgb: list[int]) -> pyvips.Image:
    if not image.hasalpha():
        return image
    if image.bands < 3 and len(set(rgb)) > 1:
        # A grey image would take only the brightness of a coloured background.
        image = image.colourspace("srgb")
    return image.flatten(background=_background(image, rgb)).cast("uchar")


# The largest value of each integer sample format that libvips' conversion
# to 8 bits would misread: signed ones as unsigned, 32-bit ones as 16-bit.
_SAMPLE_MAXIMUM = {"char": 127, "short": 32767, "int": 2**31 - 1, "uint": 2**32 - 1}


# The largest finite value of a 64-bit float: a NaN or an infinity fails
# the test `abs(x) <= _FLOAT_MAXIMUM`.
_FLOAT_MAXIMUM = 1.7976931348623157e308


def _load_scaled_to_8bit(data: bytes, load_options: str) -> pyvips.Image | None:
    """Load a TIFF of signed, 32-bit or floating-point samples as 8-bit, or None.

    `thumbnail` casts such samples to 8 bits unscaled, which makes a float
    image of 0 to 1 black and a signed 16-bit one half as bright. Integers
    are scaled from 0 to their format's largest value, or from its smallest
    when a sample is negative. Floats are scaled from 0 to 1 when all are
    in that range, from -1 to 1 when all are in that one, and are otherwise
    taken as 0 to 255. libvips reads float RGB as linear light (scRGB):
    in the first two ranges it stays linear and is converted to sRGB, and
    in the third it is taken as sRGB values. None leaves the image to
    `thumbnail`.
    """
    image = pyvips.Image.new_from_source(
        memory_source(data), load_options, access="sequential"
    )
    if image.format in _SAMPLE_MAXIMUM:
        largest = _SAMPLE_MAXIMUM[image.format]
        signed = image.format in ("char", "short", "int")
        if signed:
            image = image.copy_memory()
        if signed and image.min() < 0:
            image = (image + (largest + 1)) * (255 / (2 * largest + 1))
        else:
            image = image * (255 / largest)
    elif image.format in ("float", "double") and image.interpretation in (
        "b-w",
        "srgb",
        "multiband",
        "scrgb",
    ):
        linear = image.interpretation == "scrgb"
        # NaN and infinite samples become 0, so they do not set the range.
        finite = image.abs() <= _FLOAT_MAXIMUM
        image = finite.ifthenelse(image, 0).copy_memory()
        low, high = image.min(), image.max()
        if -1.0 <= low < 0.0 and high <= 1.0:
            image = (image + 1) / 2
        elif not (0.0 <= low and high <= 1.0):
            linear = False
            image = image / 255
        if linear:
            return image.copy(interpretation="scrgb").colourspace("srgb")
        image = image * 255
    else:
        return None
    interpretation = "b-w" if image.bands < 3 else "srgb"
    return image.cast("uchar").copy(interpretation=interpretation)


def _load_with_pillow(data: bytes) -> pyvips.Image:
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    # libheif applies the container's rotation and mirror boxes itself.
    with Image.open(io.BytesIO(data)) as opened:
        picture: Image.Image = opened
        if picture.mode not in ("RGB", "RGBA", "L", "LA"):
            picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
        icc = picture.info.get("icc_profile")
        image = pyvips.Image.new_from_memory(
            picture.tobytes(),
            picture.width,
            picture.height,
            len(picture.getbands()),
            "uchar",
        )
    interpretation = "srgb" if image.bands >= 3 else "b-w"
    image = image.copy(interpretation=interpretation)
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return image


def _needs_colour_transform(header: Header) -> bool:
    # Untagged RGB and grey are sRGB by convention, and a transform through
    # the profile connection space costs more than the whole resize.
    return header.has_profile or header.interpretation == "cmyk"


def _decode_base(
    data: bytes,
    header: Header,
    size: tuple[int, int],
    flatten: list[int] | None,
    load_options: str,
) -> pyvips.Image:
    """Decode, orient and shrink to `size`, returning an image held in memory."""
    width, height = size
    orient_after = not header.oriented_on_load and header.orientation != 1
    if orient_after and header.orientation >= 5:
        # Fit the stored image, whose sides the rotation swaps.
        width, height = height, width
    colour = {"export_profile": "srgb"} if _needs_colour_transform(header) else {}
    scaled = None
    if header.format == "tiff":
        scaled = _load_scaled_to_8bit(data, load_options)
    if scaled is not None:
        image = scaled.thumbnail_image(width, height=height, size="down", **colour)
    elif header.format in _PILLOW_DECODED:
        image = _load_with_pillow(data).thumbnail_image(
            width, height=height, size="down", **colour
        )
    else:
        image = pyvips.Image.thumbnail_source(
            memory_source(data),
            width,
            height=height,
            size="down",
            option_string=load_options,
            **colour,
        )
    if orient_after:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", header.orientation)
        image = image.autorot()
    image = _to_8bit_srgb(image)
    if flatten is not None:
        image = _flatten(image, flatten)
    return image.copy_memory()


def _resize(image: pyvips.Image, width: int, height: int) -> pyvips.Image:
    if (image.width, image.height) == (width, height):
        return image
    alpha = image.hasalpha()
    if alpha:
        image = image.premultiply()
    image = image.resize(width / image.width, vscale=height / image.height)
    if alpha:
        image = image.unpremultiply().cast("uchar")
    if (image.width, image.height) != (width, height):
        # Rounding in resize can leave one pixel too many or too few.
        image = image.gravity("centre", width, height, extend="copy")
    return image


def _shape(base: pyvips.Image, plan: VariantPlan) -> pyvips.Image:
    image = _resize(base, *plan.resize)
    if plan.crop is not None:
        left, top, crop_w, crop_h = plan.crop
        if (crop_w, crop_h) != (image.width, image.height):
            image = image.crop(left, top, crop_w, crop_h)
    return image


def _cascade(base: pyvips.Image, plans: list[VariantPlan]) -> dict[str, pyvips.Image]:
    """Shape every plan, each from the smallest earlier result that covers it.

    Resizing 1024 to 256 costs a quarter of resizing 2048 to 256, so each
    uncropped result is rendered to memory and serves the smaller ones.
    """
    made = [base]
    shaped = {}
    for plan in sorted(plans, key=lambda p: p.resize, reverse=True):
        width, height = plan.resize
        covering = [m for m in made if m.width >= width and m.height >= height]
        source = min(covering, key=lambda m: m.width) if covering else base
        image = _shape(source, plan)
        if plan.crop is None and image is not source:
            image = image.copy_memory()
            made.append(image)
        shaped[plan.name] = image
    return shaped


def _strip_exif_fields(image: pyvips.Image) -> pyvips.Image:
    image = image.copy()
    for name in image.get_fields():
        if name.startswith("exif-") or name in ("xmp-data", "iptc-data", "orientation"):
            image.remove(name)
    return image


@contextlib.contextmanager
def _libvips_threads(count: int) -> Iterator[None]:
    """Run the block with libvips limited to `count` threads."""
    previous = pyvips.concurrency_get()
    pyvips.concurrency_set(count)
    try:
        yield
    finally:
        pyvips.concurrency_set(previous)


def _keep_flags(output: OutputConfig, exif: bytes | None) -> int:
    keep = pyvips.enums.ForeignKeep.NONE
    if output.keep_icc:
        keep |= pyvips.enums.ForeignKeep.ICC
    if exif is not None:
        keep |= pyvips.enums.ForeignKeep.EXIF
    return int(keep)


def _encode(image: pyvips.Image, variant: Variant, keep: int) -> bytes:
    fmt = variant.format
    if fmt is OutputFormat.JPEG:
        return image.jpegsave_buffer(
            Q=variant.quality, interlace=variant.progressive, keep=keep
        )
    if fmt is OutputFormat.WEBP:
        return image.webpsave_buffer(
            Q=variant.quality, effort=variant.effort, keep=keep
        )
    if fmt is OutputFormat.AVIF:
        # The AV1 encoder gets libvips' thread count, and its output depends
        # on it. One thread gives every model, whatever its threads, the
        # same bytes.
        with _libvips_threads(1):
            return image.heifsave_buffer(
                Q=variant.quality, effort=variant.effort, compression="av1", keep=keep
            )
    return image.pngsave_buffer(interlace=variant.progressive, keep=keep)


def _prepare_for_output(
    image: pyvips.Image, variant: Variant, config: PipelineConfig, exif: bytes | None
) -> pyvips.Image:
    if not variant.format.has_alpha:
        image = _flatten(image, config.transform.background_rgb)
    image = _strip_exif_fields(image)
    if exif is not None:
        image.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    if not config.output.keep_icc and image.get_typeof("icc-profile-data"):
        image.remove("icc-profile-data")
    return image


def _render_animated(
    data: bytes,
    header: Header,
    plan: VariantPlan,
    config: PipelineConfig,
    load_options: str,
) -> pyvips.Image:
    frames = min(header.pages, config.transform.max_frames)
    # Each frame is scaled to the plan's size. libvips would crop the
    # frames' stacked strip as one image, so frames are cropped one by one.
    width, height = plan.resize
    image = pyvips.Image.thumbnail_buffer(
        data,
        width,
        height=height,
        size="force",
        option_string=f"{load_options},n={frames}",
        **({"export_profile": "srgb"} if _needs_colour_transform(header) else {}),
    )
    if plan.crop is not None:
        image = _crop_frames(image, plan.crop)
    return _to_8bit_srgb(image).copy_memory()


def _crop_frames(image: pyvips.Image, box: tuple[int, int, int, int]) -> pyvips.Image:
    """Cut the same box out of every frame of an animation stacked vertically."""
    left, top, width, height = box
    page = image.get("page-height") if image.get_typeof("page-height") else image.height
    frames = [
        image.crop(left, index * page + top, width, height)
        for index in range(image.height // page)
    ]
    # The joined image takes its metadata, frame delays included, from the first.
    joined = pyvips.Image.arrayjoin(frames, across=1).copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", height)
    return joined


def _is_animated_output(
    header: Header, plan: VariantPlan, config: PipelineConfig
) -> bool:
    return (
        header.pages > 1
        and header.format in ("gif", "webp")
        and config.transform.animation == "keep"
        and plan.variant.format.animates
    )


def render(
    data: bytes, header: Header, plans: list[VariantPlan], config: PipelineConfig
) -> list[Rendered]:
    """Decode `data` once and encode every planned variant.

    Memory: one base image in memory plus one variant at a time. Animated
    variants (animation = 'keep') decode their own frames instead.
    """
    width, height = header.display_size
    still = [p for p in plans if not _is_animated_output(header, p, config)]
    keeps_alpha = any(p.variant.format.has_alpha for p in still)
    flatten = None if keeps_alpha else config.transform.background_rgb
    exif = exif_for_output(data, config.output)
    keep = _keep_flags(config.output, exif)

    def decode(load_options: str) -> tuple[dict[str, pyvips.Image], set[str]]:
        shaped: dict[str, pyvips.Image] = {}
        animated: set[str] = set()
        if still:
            base_dimensions = base_size(still, width, height)
            base = _decode_base(data, header, base_dimensions, flatten, load_options)
            shaped.update(_cascade(base, still))
        for plan in plans:
            if plan.name not in shaped:
                shaped[plan.name] = _render_animated(
                    data, header, plan, config, load_options
                )
                animated.add(plan.name)
        return shaped, animated

    try:
        try:
            shaped, animated = decode(_STRICT)
        except pyvips.Error as exc:
            detail = _error_detail(exc)
            if _DATA_MISSING.search(detail):
                if undecodable_reason(header.format, data) is Reason.TRUNCATED:
                    # The data ends early: the message every engine gives.
                    raise decode_failure(
                        header.format, data, detail, stage=STAGE
                    ) from None
                raise Rejected(
                    Reason.TRUNCATED,
                    f"{header.format} image data ends before the "
                    f"{header.width}x{header.height} image is complete: {detail}",
                    stage=STAGE,
                ) from None
            damaged = any(_SCAN_DAMAGE.search(line) for line in error_lines(exc))
            if damaged or header.format in _DAMAGE_ON_STRICT_FAILURE:
                raise decode_failure(
                    header.format, data, _all_details(exc), stage=STAGE
                ) from None
            shaped, animated = decode(_TOLERANT)
    except (pyvips.Error, OSError, ValueError) as exc:
        raise _decode_failure(header, data, exc) from None

    rendered = []
    encodings: dict[tuple[object, ...], bytes] = {}
    for plan in plans:
        image = _prepare_for_output(shaped[plan.name], plan.variant, config, exif)
        try:
            # Variants that resolve to the same pixels and settings (medium
            # and large of a small photo) are encoded once.
            same = (encoding_key(plan), plan.name in animated)
            if same not in encodings:
                encodings[same] = _encode(image, plan.variant, keep)
            encoded = encodings[same]
        except pyvips.Error as exc:
            raise StageFailed(
                Reason.ENCODE_FAILED,
                f"{plan.variant.format.value} encode of variant {plan.name!r} "
                f"failed: {_error_detail(exc)}",
                stage=STAGE,
            ) from None
        page_height = (
            image.get("page-height") if image.get_typeof("page-height") else None
        )
        rendered.append(
            Rendered(
                name=plan.name,
                data=encoded,
                width=image.width,
                height=page_height or image.height,
                format=plan.variant.format.value,
                suffix=plan.variant.format.suffix,
            )
        )
    return rendered
