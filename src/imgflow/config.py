"""Pipeline configuration: typed, validated once at start-up, loaded from TOML.

Every setting carries a description; `starter_config()` renders them as the
commented file that `imgflow init` writes, so the docs and the sample config
cannot drift from the code.

The settings are msgspec structs: importing msgspec and defining them costs
a few milliseconds, against about 70 ms for the same models in pydantic, and
every `imgflow run` pays it before its first image.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import typing
from collections.abc import Sequence
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from imgflow.errors import ConfigError

log = logging.getLogger(__name__)

# The folder of JSON sidecars in an output folder; no variant may use it.
SIDECAR_FOLDER = "meta"

INPUT_FORMATS = ("jpeg", "png", "webp", "gif", "tiff", "avif", "heic")


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"
    PNG = "png"

    @property
    def suffix(self) -> str:
        return ".jpg" if self is OutputFormat.JPEG else f".{self.value}"

    @property
    def has_alpha(self) -> bool:
        return self is not OutputFormat.JPEG

    @property
    def animates(self) -> bool:
        return self is OutputFormat.WEBP

    @property
    def max_edge(self) -> int:
        """The maximum side, in pixels, of an image the format's encoder writes."""
        # libjpeg stops at 65500 and libwebp at 16383 pixels a side.
        return {OutputFormat.JPEG: 65_500, OutputFormat.WEBP: 16_383}.get(self, 65_535)


class Fit(StrEnum):
    INSIDE = "inside"
    COVER = "cover"
    EXACT = "exact"


class _Section(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A table of settings. Building one directly checks only the cross-field
    rules in `__post_init__`: `parse_config` checks types and ranges too."""


Edge = Annotated[int, Meta(gt=0, le=65_535)]


class Variant(_Section, frozen=True):
    """One output rendition of every image."""

    size: Annotated[
        Edge | None, Meta(description="Box edge in pixels: sets both width and height.")
    ] = None
    width: Annotated[Edge | None, Meta(description="Box width in pixels.")] = None
    height: Annotated[Edge | None, Meta(description="Box height in pixels.")] = None
    fit: Annotated[
        Fit,
        Meta(
            description=(
                "inside: keep the aspect ratio and fit within the box; "
                "cover: fill the box and crop the centre; exact: stretch to the box."
            )
        ),
    ] = Fit.INSIDE
    format: Annotated[
        OutputFormat, Meta(description="Output format: jpeg, webp, avif or png.")
    ] = OutputFormat.JPEG
    quality: Annotated[
        int,
        Meta(ge=1, le=100, description="Encoder quality for jpeg, webp and avif."),
    ] = 85
    progressive: Annotated[
        bool, Meta(description="Progressive JPEG, or interlaced PNG.")
    ] = False
    effort: Annotated[
        int,
        Meta(
            ge=0,
            le=9,
            description=(
                "CPU effort for webp (0-6) and avif (0-9); higher is smaller and slower."
            ),
        ),
    ] = 4
    upscale: Annotated[
        bool, Meta(description="Enlarge images smaller than the box.")
    ] = False

    def __post_init__(self) -> None:
        if self.size is not None and (
            self.width is not None or self.height is not None
        ):
            raise ValueError("set either size, or width and height, not both")
        if self.size is None and self.width is None and self.height is None:
            raise ValueError("set size, or width, height or both")
        if (
            self.fit is not Fit.INSIDE
            and (self.size is None)
            and (self.width is None or self.height is None)
        ):
            raise ValueError(f"fit = {self.fit.value!r} needs both width and height")
        if self.format is OutputFormat.WEBP and self.effort > 6:
            raise ValueError(f"effort: must be 0-6 for webp, got {self.effort}")
        longest = max(edge for edge in (self.size, self.width, self.height) if edge)
        if longest > self.format.max_edge:
            raise ValueError(
                f"{self.format.value} images are at most {self.format.max_edge} "
                f"pixels a side, got {longest}"
            )

    @property
    def grows(self) -> bool:
        """True when an output may be larger than its source image."""
        return self.upscale or self.fit is not Fit.INSIDE

    @property
    def box(self) -> tuple[int | None, int | None]:
        """(width, height) of the target box; None leaves that side free."""
        if self.size is not None:
            return self.size, self.size
        return self.width, self.height


# The formats whose encoder reads each setting. Elsewhere it has no effect.
_SETTING_FORMATS = {
    "quality": ("jpeg", "webp", "avif"),
    "effort": ("webp", "avif"),
    "progressive": ("jpeg", "png"),
}


def _unused_settings(
    name: str, settings: dict[str, Any], variant: Variant
) -> list[str]:
    """Return a message for each setting given to a variant whose format ignores it."""
    return [
        f"variants.{name}.{key} has no effect: {variant.format.value} output "
        f"does not use it, only {', '.join(formats)} do"
        for key, formats in _SETTING_FORMATS.items()
        if key in settings and variant.format.value not in formats
    ]


def _default_variants() -> dict[str, Variant]:
    return {
        "thumb": Variant(size=256),
        "medium": Variant(size=1024),
        "large": Variant(size=2048),
    }


class ValidateConfig(_Section, frozen=True):
    allowed_formats: Annotated[
        list[str],
        Meta(
            description=(
                "Input formats accepted, sniffed from the bytes: "
                f"{', '.join(INPUT_FORMATS)}."
            )
        ),
    ] = field(default_factory=lambda: list(INPUT_FORMATS))
    max_file_bytes: Annotated[
        int, Meta(gt=0, description="Largest input file accepted, in bytes.")
    ] = 200 * 1024 * 1024
    max_pixels: Annotated[
        int,
        Meta(
            gt=0,
            description=(
                "Largest width x height accepted, read from the header before decoding."
            ),
        ),
    ] = 100_000_000

    def __post_init__(self) -> None:
        lowered = [name.lower() for name in self.allowed_formats]
        unknown = sorted(set(lowered) - set(INPUT_FORMATS))
        if unknown:
            raise ValueError(
                f"allowed_formats: unknown format {unknown[0]!r}; expected some of "
                f"{', '.join(INPUT_FORMATS)}"
            )
        if not lowered:
            raise ValueError("allowed_formats: must name at least one format")
        msgspec.structs.force_setattr(self, "allowed_formats", lowered)


class TransformConfig(_Section, frozen=True):
    background: Annotated[
        str,
        Meta(
            description=(
                "Colour that transparency is flattened onto for formats without alpha."
            )
        ),
    ] = "#ffffff"
    animation: Annotated[
        Literal["first", "keep"],
        Meta(
            description=(
                "Animated input: keep only the first frame, or keep the animation "
                "in webp variants."
            )
        ),
    ] = "first"
    max_frames: Annotated[
        int,
        Meta(
            gt=0,
            description="With animation = 'keep', frames beyond this many are dropped.",
        ),
    ] = 300

    def __post_init__(self) -> None:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.background):
            raise ValueError(
                'background: expected a colour like "#ffffff" '
                f"(got {json.dumps(self.background)})"
            )
        msgspec.structs.force_setattr(self, "background", self.background.lower())

    @property
    def background_rgb(self) -> list[int]:
        return [int(self.background[i : i + 2], 16) for i in (1, 3, 5)]


class OutputConfig(_Section, frozen=True):
    keep_exif: Annotated[
        bool, Meta(description="Copy EXIF into the variants (orientation reset).")
    ] = False
    keep_gps: Annotated[
        bool, Meta(description="With keep_exif, also keep the GPS position.")
    ] = False
    keep_icc: Annotated[
        bool,
        Meta(
            description=(
                "Embed the sRGB profile in variants of images that carried a "
                "colour profile."
            )
        ),
    ] = True
    fsync: Annotated[
        bool,
        Meta(
            description=(
                "Flush each file to disk before its rename. A killed process never "
                "leaves a partial file either way; this guards against power loss, "
                "at about 10% of throughput."
            )
        ),
    ] = False

    def __post_init__(self) -> None:
        if self.keep_gps and not self.keep_exif:
            raise ValueError("keep_gps = true needs keep_exif = true as well")


def _check_variant_name(name: str) -> None:
    if name == SIDECAR_FOLDER:
        raise ValueError(
            f"variants: variant name {name!r} is reserved for the metadata sidecars"
        )
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise ValueError(
            f"variants: variant name {name!r} must be 1 to 64 lower-case letters, "
            "digits, '-' or '_', starting with a letter or digit"
        )


class PipelineConfig(_Section, frozen=True):
    """The whole pipeline: what is accepted, what is made, how it is written."""

    validate_: ValidateConfig = field(default_factory=ValidateConfig, name="validate")
    transform: TransformConfig = field(default_factory=TransformConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    variants: dict[str, Variant] = field(default_factory=_default_variants)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("variants: at least one variant is needed")
        for name in self.variants:
            _check_variant_name(name)
        # Inputs are capped at validate.max_pixels; a variant that may be
        # larger than its source is capped there too.
        limit = self.validate_.max_pixels
        for name, variant in self.variants.items():
            width, height = variant.box
            if not variant.grows or width is None or height is None:
                continue
            if width * height > limit:
                raise ValueError(
                    f"variants: variant {name!r} may reach {width}x{height} = "
                    f"{width * height:,} pixels, over validate.max_pixels "
                    f"({limit:,}); lower its size or raise the limit"
                )

    @property
    def validation(self) -> ValidateConfig:
        return self.validate_

    def digest(self) -> str:
        """Return a SHA-256 of the settings that shape the outputs."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        """Return the settings as compact JSON, keyed as in the TOML file."""
        return msgspec.json.encode(self).decode()


# msgspec ends each message with the location of the bad value, as in
# "Expected `str`, got `int` - at `$[1]`". Each setting is converted on its
# own, so the only location below a setting is a list item.
_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_LIST_INDEX = re.compile(r"\[(\d+)\]")


def _item_type(kind: Any) -> Any:
    """Return the type of the items of a list type, annotations removed."""
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    arguments = typing.get_args(kind)
    return arguments[-1] if arguments else None


def _choices(kind: Any) -> list[str]:
    """Return the values an enum or literal type accepts, or none for others."""
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return [str(member.value) for member in kind]
    if typing.get_origin(kind) is Literal:
        return [str(value) for value in typing.get_args(kind)]
    return []


# msgspec names JSON types; a config file is TOML. An optional setting
# can be left out, so its null needs no mention.
_TOML_TERMS = {
    "`int | null`": "an integer",
    "`int`": "an integer",
    "`str`": "a string",
    "`bool`": "true or false",
    "`object`": "a table",
    "`array`": "an array",
}


def _in_toml_terms(message: str) -> str:
    for term, toml in _TOML_TERMS.items():
        message = message.replace(term, toml)
    return message


def _shown(value: Any) -> str:
    """Write a value from a config file the way TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{key} = {_shown(item)}" for key, item in value.items())
        return "{" + pairs + "}"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _describe_error(
    error: msgspec.ValidationError, value: Any, kind: Any, key: str
) -> str:
    """Render a validation error of one setting as "key: message (got value)"."""
    text = str(error)
    location = _LOCATION.search(text)
    message = text[: location.start()] if location else text
    if location:
        for index in map(int, _LIST_INDEX.findall(location["path"])):
            key += f"[{index}]"
            fits = isinstance(value, list) and index < len(value)
            value = value[index] if fits else None
            kind = _item_type(kind)
    if message.startswith("Invalid enum value") and _choices(kind):
        message = f"expected one of {', '.join(_choices(kind))}"
    elif message.startswith("Expected"):
        # "Expected `int`, got `str`": the value itself is shown instead.
        message = _in_toml_terms(re.sub(r", got `\w+`$", "", message))
    message = message.replace("`", "")
    message = message[:1].lower() + message[1:]
    return f"{key}: {message} (got {_shown(value)})"


def _rule_error(error: ValueError, key: str, fields: Sequence[str]) -> str:
    """Render a failed cross-field rule; one that names a field gets its key."""
    message = str(error)
    field_name, _, rest = message.partition(": ")
    if rest and field_name in fields:
        return f"{key}.{field_name}: {rest}"
    return f"{key}: {message}"


def _check_table(data: Any, kind: type[_Section], key: str, errors: list[str]) -> Any:
    """Check each setting of one table, then its cross-field rules.

    Appends a message per bad setting to `errors` and returns the table as
    `kind`, or None when anything in it is wrong.
    """
    if not isinstance(data, dict):
        errors.append(f"{key}: expected a table (got {_shown(data)})")
        return None
    hints = typing.get_type_hints(kind, include_extras=True)
    fields = {info.encode_name: info.name for info in msgspec.structs.fields(kind)}
    values = {}
    count = len(errors)
    for name, value in data.items():
        attribute = fields.get(name)
        if attribute is None:
            errors.append(
                f"{key}.{name}: unknown setting; expected one of {', '.join(fields)}"
            )
            continue
        try:
            values[attribute] = msgspec.convert(value, hints[attribute])
        except msgspec.ValidationError as exc:
            errors.append(
                _describe_error(exc, value, hints[attribute], f"{key}.{name}")
            )
    failed = len(errors) > count
    try:
        table = kind(**values)
    except ValueError as exc:
        # With settings missing, only a rule on one valid setting is real.
        named = str(exc).partition(": ")[0]
        if not failed or named in values:
            errors.append(_rule_error(exc, key, list(fields)))
        return None
    return None if failed else table


_TABLES: dict[str, type[_Section]] = {
    "validate": ValidateConfig,
    "transform": TransformConfig,
    "output": OutputConfig,
}


def parse_config(
    data: dict[str, Any], *, source: str = "config", stored: bool = False
) -> PipelineConfig:
    """Validate a decoded TOML table; raise ConfigError naming each bad key.

    Every setting is checked on its own, so one message names each bad one.
    `stored` marks a configuration that a run saved with every default
    filled in, so settings its formats do not use are not warned about.
    """
    errors: list[str] = []
    known = [*_TABLES, "variants"]
    tables: dict[str, Any] = {}
    for name in data:
        if name not in known:
            errors.append(
                f"{name}: unknown setting; expected one of {', '.join(known)}"
            )
    for name, kind in _TABLES.items():
        if name in data:
            tables[name] = _check_table(data[name], kind, name, errors)
    variants = data.get("variants")
    if variants is not None:
        if isinstance(variants, dict):
            checked = {}
            for name, settings in variants.items():
                try:
                    _check_variant_name(name)
                except ValueError as exc:
                    errors.append(str(exc))
                checked[name] = _check_table(
                    settings, Variant, f"variants.{name}", errors
                )
                if isinstance(checked[name], Variant) and not stored:
                    # Such a setting is harmless and most likely meant for
                    # another format, so it only warns.
                    for message in _unused_settings(name, settings, checked[name]):
                        log.warning("%s", message)
            tables["variants"] = checked
        else:
            errors.append(f"variants: expected a table (got {_shown(variants)})")
    if errors:
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(errors))
    try:
        return PipelineConfig(
            validate_=tables.get("validate") or ValidateConfig(),
            transform=tables.get("transform") or TransformConfig(),
            output=tables.get("output") or OutputConfig(),
            variants=tables.get("variants", _default_variants()),
        )
    except ValueError as exc:
        # The rules across tables name the setting they check.
        raise ConfigError(f"invalid {source}:\n  {exc}") from None


def load_config(path: Path | None) -> PipelineConfig:
    """Read and validate a TOML config file; None gives the defaults."""
    if path is None:
        return PipelineConfig()
    # A run without a config file never parses TOML, so tomllib loads here.
    import tomllib

    try:
        # Editors on Windows may start the file with a byte order mark.
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start}; save it as UTF-8, as TOML requires"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_config(data, source=f"config file {path}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int):
        return f"{value:_}" if value >= 100_000 else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def settings_of(section: type[_Section]) -> list[tuple[str, str]]:
    """Return (key, description) for each setting of a config table."""
    hints = typing.get_type_hints(section, include_extras=True)
    described = []
    for info in msgspec.structs.fields(section):
        metadata = typing.get_args(hints[info.name])[1:]
        descriptions = [m.description for m in metadata if isinstance(m, Meta)]
        described.append(
            (info.encode_name, descriptions[0] or "" if descriptions else "")
        )
    return described


def _section_lines(section: type[_Section], values: _Section) -> list[str]:
    lines = []
    for key, description in settings_of(section):
        value = getattr(values, key)
        if value is None:
            continue
        lines.append(f"# {description}")
        lines.append(
            f"{key} = {_toml_value(value.value if isinstance(value, StrEnum) else value)}"
        )
    return lines


def starter_config() -> str:
    """Render the default configuration as commented TOML."""
    defaults = PipelineConfig()
    out = [
        "# imgflow pipeline configuration. Every key is optional; the values",
        "# below are the defaults. Run `imgflow run --config FILE ...` to use it.",
        "",
    ]
    sections: list[tuple[str, type[_Section], _Section]] = [
        ("validate", ValidateConfig, defaults.validation),
        ("transform", TransformConfig, defaults.transform),
        ("output", OutputConfig, defaults.output),
    ]
    for title, section, values in sections:
        out.append(f"[{title}]")
        out.extend(_section_lines(section, values))
        out.append("")
    out.append("# Variants: one table per output rendition, named [variants.NAME].")
    out.append("# Settings available in each table:")
    for name, description in settings_of(Variant):
        out.append(f"#   {name}: {description}")
    out.append("")
    for name, variant in defaults.variants.items():
        out.append(f"[variants.{name}]")
        for key in ("size", "fit", "format", "quality"):
            value = getattr(variant, key)
            out.append(
                f"{key} = {_toml_value(value.value if isinstance(value, StrEnum) else value)}"
            )
        out.append("")
    return "\n".join(out)
