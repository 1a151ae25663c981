"""Pipeline configuration: typed, validated once at start-up, loaded from TOML.

Every setting carries a description; `starter_config()` renders them as the
commented file that `imgflow init` writes, so the docs and the sample config
cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from imgflow.errors import ConfigError

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


class _Section(BaseModel):
    # Schemas are built on first validation: a worker process only unpickles
    # configurations, so it never pays for building them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Variant(_Section):
    """One output rendition of every image."""

    size: Annotated[StrictInt | None, Field(gt=0, le=65_535)] = Field(
        default=None,
        description="Box edge in pixels: sets both width and height.",
    )
    width: Annotated[StrictInt | None, Field(gt=0, le=65_535)] = Field(
        default=None, description="Box width in pixels."
    )
    height: Annotated[StrictInt | None, Field(gt=0, le=65_535)] = Field(
        default=None, description="Box height in pixels."
    )
    fit: Fit = Field(
        default=Fit.INSIDE,
        description=(
            "inside: keep the aspect ratio and fit within the box; "
            "cover: fill the box and crop the centre; exact: stretch to the box."
        ),
    )
    format: OutputFormat = Field(
        default=OutputFormat.JPEG, description="Output format: jpeg, webp, avif or png."
    )
    quality: StrictInt = Field(
        default=85, ge=1, le=100, description="Encoder quality for jpeg, webp and avif."
    )
    progressive: StrictBool = Field(
        default=False,
        description="Progressive JPEG, or interlaced PNG.",
    )
    effort: StrictInt = Field(
        default=4,
        ge=0,
        le=9,
        description="CPU effort for webp (0-6) and avif (0-9); higher is smaller and slower.",
    )
    upscale: StrictBool = Field(
        default=False, description="Enlarge images smaller than the box."
    )

    @model_validator(mode="after")
    def _check_box(self) -> Variant:
        if self.size is not None and (
            self.width is not None or self.height is not None
        ):
            raise ValueError("set either size, or width and height, not both")
        if self.size is None and self.width is None and self.height is None:
            raise ValueError("set size, or width and height")
        if (
            self.fit is not Fit.INSIDE
            and (self.size is None)
            and (self.width is None or self.height is None)
        ):
            raise ValueError(f"fit = {self.fit.value!r} needs both width and height")
        if self.format is OutputFormat.WEBP and self.effort > 6:
            raise ValueError(f"effort for webp must be 0-6, got {self.effort}")
        longest = max(edge for edge in (self.size, self.width, self.height) if edge)
        if longest > self.format.max_edge:
            raise ValueError(
                f"{self.format.value} images are at most {self.format.max_edge} "
                f"pixels a side, got {longest}"
            )
        return self

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


def _default_variants() -> dict[str, Variant]:
    return {
        "thumb": Variant(size=256),
        "medium": Variant(size=1024),
        "large": Variant(size=2048),
    }


class ValidateConfig(_Section):
    allowed_formats: list[str] = Field(
        default=list(INPUT_FORMATS),
        description=f"Input formats accepted, sniffed from the bytes: {', '.join(INPUT_FORMATS)}.",
    )
    max_file_bytes: StrictInt = Field(
        default=200 * 1024 * 1024,
        gt=0,
        description="Largest input file accepted, in bytes.",
    )
    max_pixels: StrictInt = Field(
        default=100_000_000,
        gt=0,
        description="Largest width x height accepted, read from the header before decoding.",
    )

    @field_validator("allowed_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        lowered = [name.lower() for name in value]
        unknown = sorted(set(lowered) - set(INPUT_FORMATS))
        if unknown:
            raise ValueError(
                f"unknown format {unknown[0]!r}; expected some of {', '.join(INPUT_FORMATS)}"
            )
        if not lowered:
            raise ValueError("must name at least one format")
        return lowered


class TransformConfig(_Section):
    background: str = Field(
        default="#ffffff",
        description="Colour that transparency is flattened onto for formats without alpha.",
    )
    animation: Literal["first", "keep"] = Field(
        default="first",
        description="Animated input: keep only the first frame, or keep the animation in webp variants.",
    )
    max_frames: StrictInt = Field(
        default=300,
        gt=0,
        description="With animation = 'keep', frames beyond this many are dropped.",
    )

    @field_validator("background")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError(f"expected a colour like '#ffffff', got {value!r}")
        return value.lower()

    @property
    def background_rgb(self) -> list[int]:
        return [int(self.background[i : i + 2], 16) for i in (1, 3, 5)]


class OutputConfig(_Section):
    @model_validator(mode="after")
    def _gps_needs_exif(self) -> OutputConfig:
        if self.keep_gps and not self.keep_exif:
            raise ValueError("keep_gps = true needs keep_exif = true as well")
        return self

    keep_exif: StrictBool = Field(
        default=False, description="Copy EXIF into the variants (orientation reset)."
    )
    keep_gps: StrictBool = Field(
        default=False, description="With keep_exif, also keep the GPS position."
    )
    keep_icc: StrictBool = Field(
        default=True,
        description="Embed the sRGB profile in variants of images that carried a colour profile.",
    )
    fsync: StrictBool = Field(
        default=False,
        description=(
            "Flush each file to disk before its rename. A killed process never "
            "leaves a partial file either way; this guards against power loss, "
            "at about 10% of throughput."
        ),
    )


class PipelineConfig(_Section):
    """The whole pipeline: what is accepted, what is made, how it is written."""

    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    transform: TransformConfig = Field(default_factory=TransformConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    variants: dict[str, Variant] = Field(default_factory=_default_variants)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, defer_build=True
    )

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        if not value:
            raise ValueError("at least one variant is needed")
        for name in value:
            if name == SIDECAR_FOLDER:
                raise ValueError(
                    f"variant name {name!r} is reserved for the metadata sidecars"
                )
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
                raise ValueError(
                    f"variant name {name!r} must be lower-case letters, digits, '-' or '_'"
                )
        return value

    @model_validator(mode="after")
    def _check_output_pixels(self) -> PipelineConfig:
        # Inputs are capped at validate.max_pixels; a variant that may be
        # larger than its source is capped there too.
        limit = self.validate_.max_pixels
        for name, variant in self.variants.items():
            width, height = variant.box
            if not variant.grows or width is None or height is None:
                continue
            if width * height > limit:
                raise ValueError(
                    f"variant {name!r} may reach {width}x{height} = "
                    f"{width * height:,} pixels, over validate.max_pixels "
                    f"({limit:,}); lower its size or raise the limit"
                )
        return self

    @property
    def validation(self) -> ValidateConfig:
        return self.validate_

    def digest(self) -> str:
        """Return a SHA-256 of the settings that shape the outputs."""
        text = self.model_dump_json(by_alias=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _describe_error(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    found = repr(error.get("input"))
    if found in message:
        return f"{key}: {message}"
    return f"{key}: {message} (got {found})"


def parse_config(data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
    """Validate a decoded TOML table; raise ConfigError naming each bad key."""
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe_error(error) for error in exc.errors()]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


def load_config(path: Path | None) -> PipelineConfig:
    """Read and validate a TOML config file; None gives the defaults."""
    if path is None:
        return PipelineConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
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


def _section_lines(model: type[BaseModel], values: BaseModel) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        value = getattr(values, name)
        if value is None:
            continue
        key = field.alias or name
        lines.append(f"# {field.description}")
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
    sections: list[tuple[str, type[BaseModel], BaseModel]] = [
        ("validate", ValidateConfig, defaults.validation),
        ("transform", TransformConfig, defaults.transform),
        ("output", OutputConfig, defaults.output),
    ]
    for title, model, values in sections:
        out.append(f"[{title}]")
        out.extend(_section_lines(model, values))
        out.append("")
    out.append("# Variants: one table per output rendition, named [variants.NAME].")
    out.append("# Settings available in each table:")
    for name, field in Variant.model_fields.items():
        out.append(f"#   {name}: {field.description}")
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
