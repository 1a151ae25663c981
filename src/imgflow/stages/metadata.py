"""Metadata stage: dimensions, colour, EXIF, IPTC and XMP of one image.

Pillow parses the header segments only (about 0.2 ms for a camera JPEG);
no pixels are decoded. Damaged metadata never stops an image: every field is
read on its own, and what cannot be read becomes a warning.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PIL import Image, IptcImagePlugin, PngImagePlugin, UnidentifiedImageError

from imgflow.config import OutputConfig
from imgflow.records import Header

STAGE = "metadata"

_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825

_IFD0_TAGS = {"make": 0x010F, "model": 0x0110, "software": 0x0131}
_EXIF_TAGS = {
    "lens_make": 0xA433,
    "lens": 0xA434,
    "exposure_time": 0x829A,
    "f_number": 0x829D,
    "iso": 0x8827,
    "focal_length": 0x920A,
}
_DATE_ORIGINAL = 0x9003
_DATE_TIME = 0x0132

_IPTC_FIELDS = {
    "object_name": (2, 5),
    "keywords": (2, 25),
    "byline": (2, 80),
    "city": (2, 90),
    "country": (2, 101),
    "headline": (2, 105),
    "copyright": (2, 116),
    "caption": (2, 120),
}

_XMP_FIELDS = {
    "creator_tool": "{http://ns.adobe.com/xap/1.0/}CreatorTool",
    "rating": "{http://ns.adobe.com/xap/1.0/}Rating",
    "label": "{http://ns.adobe.com/xap/1.0/}Label",
    "create_date": "{http://ns.adobe.com/xap/1.0/}CreateDate",
    "title": "{http://purl.org/dc/elements/1.1/}title",
    "description": "{http://purl.org/dc/elements/1.1/}description",
    "creator": "{http://purl.org/dc/elements/1.1/}creator",
    "rights": "{http://purl.org/dc/elements/1.1/}rights",
}
_XMP_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"

_heif_registered = False


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned or None


def _number(value: Any) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        numerator, denominator = value
        value = numerator / denominator if denominator else math.nan
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _exif_date(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        raise ValueError(
            f"date {text!r} is not a valid 'YYYY:MM:DD HH:MM:SS'"
        ) from None


def _degrees(parts: Any, ref: Any) -> float | None:
    if not isinstance(parts, tuple | list) or len(parts) != 3:
        return None
    degrees, minutes, seconds = (_number(part) for part in parts)
    if degrees is None or minutes is None or seconds is None:
        return None
    value = degrees + minutes / 60 + seconds / 3600
    return -value if _text(ref) in ("S", "W") else value


def _gps(gps_ifd: dict[int, Any]) -> dict[str, float]:
    latitude = _degrees(gps_ifd.get(2), gps_ifd.get(1))
    longitude = _degrees(gps_ifd.get(4), gps_ifd.get(3))
    if latitude is None or longitude is None:
        raise ValueError("latitude or longitude missing or not numeric")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ValueError(f"position {latitude:.6g}, {longitude:.6g} is out of range")
    position = {"latitude": round(latitude, 7), "longitude": round(longitude, 7)}
    altitude = _number(gps_ifd.get(6))
    if altitude is not None:
        below_sea = gps_ifd.get(5) in (1, b"\x01")
        position["altitude"] = round(-altitude if below_sea else altitude, 2)
    return position


_OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
# Pillow's error for a compressed PNG chunk over its limit, a guard
# against decompression bombs.
_TEXT_CHUNK_LIMIT = "MAX_TEXT_CHUNK"


class _Collector:
    """Gathers fields one at a time; a field that fails becomes a warning."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def read(self, label: str, reader: Callable[[], Any]) -> Any:
        try:
            return reader()
        except UnidentifiedImageError:
            # libvips decodes some files Pillow cannot open (float or Lab TIFF).
            self.warnings.append(
                f"{label}: Pillow cannot open this file, so its EXIF, IPTC, XMP "
                "and colour profile fields were not read"
            )
            return None
        except Exception as exc:  # noqa: BLE001 - any parser fault is a warning
            # Pillow names the in-memory file by its address, which changes
            # from run to run; the sidecars must not.
            message = _OBJECT_ADDRESS.sub(">", str(exc))
            if _TEXT_CHUNK_LIMIT in message:
                message = (
                    "a PNG text or profile chunk decompresses to more than Pillow "
                    f"reads ({PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MB), so the "
                    "EXIF, IPTC, XMP and colour profile fields were not read"
                )
            self.warnings.append(f"{label}: {message}".strip())
            return None


def _parse_exif(image: Image.Image) -> Image.Exif:
    """Parse the raw EXIF block, raising on damage.

    Pillow's own `getexif()` discards a parse error it met while opening
    the file, which would hide a damaged block without a warning.
    """
    raw = image.info.get("exif")
    if not raw:
        return image.getexif()
    exif = Image.Exif()
    exif.load(raw)
    if not exif and len(raw) > 14:
        raise ValueError(f"{len(raw)}-byte EXIF block contains no readable tags")
    return exif


def _exif(image: Image.Image, collect: _Collector) -> dict[str, Any]:
    exif = collect.read("EXIF", lambda: _parse_exif(image))
    if not exif:
        return {}
    fields: dict[str, Any] = {}
    for name, tag in _IFD0_TAGS.items():
        fields[name] = _text(exif.get(tag))

    sub_ifd = collect.read("EXIF sub-IFD", lambda: exif.get_ifd(_IFD_EXIF)) or {}
    for name, tag in _EXIF_TAGS.items():
        raw = sub_ifd.get(tag)
        if name in ("lens", "lens_make"):
            fields[name] = _text(raw)
        elif name == "iso":
            raw = raw[0] if isinstance(raw, tuple) and raw else raw
            iso = _number(raw)
            fields[name] = int(iso) if iso is not None else None
        else:
            fields[name] = _rounded(_number(raw))

    date = sub_ifd.get(_DATE_ORIGINAL) or exif.get(_DATE_TIME)
    fields["date_taken"] = collect.read("EXIF date", lambda: _exif_date(date))

    gps_ifd = collect.read("EXIF GPS", lambda: exif.get_ifd(_IFD_GPS)) or {}
    fields["gps"] = collect.read("EXIF GPS", lambda: _gps(gps_ifd)) if gps_ifd else None
    return {key: value for key, value in fields.items() if value is not None}


def _iptc(image: Any) -> dict[str, Any]:
    info = IptcImagePlugin.getiptcinfo(image) or {}
    fields: dict[str, Any] = {}
    for name, key in _IPTC_FIELDS.items():
        raw = info.get(key)
        if raw is None:
            continue
        values = raw if isinstance(raw, list) else [raw]
        texts = [text for text in (_text(value) for value in values) if text]
        if texts:
            fields[name] = texts if name == "keywords" else texts[0]
    return fields


def _xmp_value(element: Any) -> str | None:
    items = [_text(item.text) for item in element.iter() if _text(item.text)]
    if items:
        return items[0]
    return None


def _xmp(image: Image.Image) -> dict[str, Any]:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if not raw:
        return {}
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    # Packet wrappers and padding around the RDF are not XML.
    match = re.search(
        r"<x:xmpmeta.*?</x:xmpmeta>|<rdf:RDF.*?</rdf:RDF>", text, re.DOTALL
    )
    # The coordinating process and most photos need neither the XML parser
    # nor the colour profile tools below, so both load on first use.
    from defusedxml import ElementTree

    root = ElementTree.fromstring(match.group(0) if match else text)
    fields: dict[str, Any] = {}
    for name, tag in _XMP_FIELDS.items():
        for description in root.iter(_XMP_RDF_ABOUT):
            value = description.get(tag)
            if value is None and (element := description.find(tag)) is not None:
                value = _xmp_value(element)
            if value:
                fields[name] = value
                break
    return fields


def _icc_description(image: Image.Image) -> str | None:
    profile = image.info.get("icc_profile")
    if not profile:
        return None
    from PIL import ImageCms

    parsed = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    return _text(ImageCms.getProfileDescription(parsed))


def read_metadata(
    data: bytes, header: Header, sha256: str
) -> tuple[dict[str, Any], list[str]]:
    """Return (metadata, warnings) for an image that passed validation."""
    display_width, display_height = header.display_size
    metadata: dict[str, Any] = {
        "sha256": sha256,
        "format": header.format,
        "bytes": len(data),
        "width": header.width,
        "height": header.height,
        "display_width": display_width,
        "display_height": display_height,
        "orientation": header.orientation,
        "bands": header.bands,
        "bit_depth": header.bit_depth,
        "pages": header.pages,
        "progressive": header.progressive,
    }
    collect = _Collector()
    if header.format == "heic":
        _register_heif()
    # Pillow reports some damage (a malformed MPO index, say) as a Python
    # warning; those become warnings of this image.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Validation has checked the pixel count against validate.max_pixels,
        # so Pillow's own limit of about 89 MP would only add a warning.
        # NOTE: above twice that limit, allowed only by a raised max_pixels,
        # Pillow refuses to open the file and its metadata is not read.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        _read_fields(data, metadata, collect)
    collect.warnings.extend(str(warning.message) for warning in caught)
    # Pillow can warn twice about one fault, with stray spaces in the text.
    tidied = (" ".join(warning.split()) for warning in collect.warnings)
    return metadata, list(dict.fromkeys(warning for warning in tidied if warning))


def _read_fields(data: bytes, metadata: dict[str, Any], collect: _Collector) -> None:
    image = collect.read("header", lambda: Image.open(io.BytesIO(data)))
    if image is None:
        return
    with image:
        metadata["colour_mode"] = image.mode
        metadata["icc_profile"] = collect.read(
            "ICC profile", lambda: _icc_description(image)
        )
        metadata["exif"] = collect.read("EXIF", lambda: _exif(image, collect)) or {}
        metadata["iptc"] = collect.read("IPTC", lambda: _iptc(image)) or {}
        metadata["xmp"] = collect.read("XMP", lambda: _xmp(image)) or {}


def exif_for_output(data: bytes, output: OutputConfig) -> bytes | None:
    """Build the EXIF block for the variants, or None when EXIF is not kept.

    The orientation is reset to 1 because the pixels are already upright,
    and the GPS block is removed unless `output.keep_gps` is set.
    """
    if not output.keep_exif:
        return None
    try:
        with warnings.catch_warnings():
            # The describe step has already recorded these warnings.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as opened:
                exif = opened.getexif()
        if not exif:
            return None
        exif[0x0112] = 1
        if not output.keep_gps:
            exif.pop(0x8825, None)
        return bytes(exif.tobytes())
    except Exception:  # noqa: BLE001 - damaged EXIF is dropped, never fatal
        return None
