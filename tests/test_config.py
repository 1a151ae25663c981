"""Configuration: validation messages and the documented reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgflow.config import (
    OutputConfig,
    PipelineConfig,
    TransformConfig,
    ValidateConfig,
    Variant,
    parse_config,
)
from imgflow.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"validate": {"max_pixels": 0}}, "validate.max_pixels"),
        ({"validate": {"allowed_formats": ["jpeg", "bmpx"]}}, "unknown format 'bmpx'"),
        ({"transform": {"background": "white"}}, "expected a colour like '#ffffff'"),
        ({"variants": {}}, "at least one variant"),
        ({"variants": {"Big Thumb": {"size": 5}}}, "variant name 'Big Thumb'"),
        ({"variants": {"t": {}}}, "set size, or width and height"),
        ({"variants": {"t": {"size": 5, "width": 4}}}, "not both"),
        (
            {"variants": {"t": {"width": 5, "fit": "cover"}}},
            "needs both width and height",
        ),
        ({"variants": {"t": {"size": 5, "format": "webp", "effort": 9}}}, "0-6"),
        ({"variants": {"t": {"size": 5, "quality": 101}}}, "variants.t.quality"),
        ({"output": {"keep_exf": True}}, "output.keep_exf: unknown setting"),
    ],
)
def test_invalid_values_named(data: dict, expected: str) -> None:
    """Each invalid value raises ConfigError naming the key or the rule."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert expected in str(caught.value)


def test_digest_follows_settings() -> None:
    """The config digest changes with any setting and is stable otherwise."""
    assert PipelineConfig().digest() == PipelineConfig().digest()
    changed = parse_config({"variants": {"thumb": {"size": 300}}})
    assert changed.digest() != PipelineConfig().digest()


def test_readme_documents_every_setting() -> None:
    """The README's configuration table names every setting."""
    text = README.read_text(encoding="utf-8")
    sections = {
        "validate": ValidateConfig,
        "transform": TransformConfig,
        "output": OutputConfig,
    }
    for section, model in sections.items():
        for name in model.model_fields:
            assert f"`{section}.{name}`" in text, (
                f"{section}.{name} missing from README"
            )
    for name in Variant.model_fields:
        if name not in ("width", "height"):
            assert f"`variants.NAME.{name}`" in text, f"variants.NAME.{name} missing"


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ({"size": 65_535}, "jpeg images are at most 65500"),
        ({"size": 20_000, "format": "webp"}, "webp images are at most 16383"),
        ({"size": 12_000, "upscale": True}, "over validate.max_pixels"),
        (
            {"width": 12_000, "height": 9_000, "fit": "cover"},
            "over validate.max_pixels",
        ),
    ],
)
def test_variant_output_limits(variant: dict, expected: str) -> None:
    """A variant that no encoder could write, or larger than any input, is refused."""
    with pytest.raises(ConfigError, match=expected):
        parse_config({"variants": {"big": variant}})


def test_variant_large_box_without_growth_allowed() -> None:
    """A box larger than the pixel limit is fine when outputs never outgrow inputs."""
    config = parse_config({"variants": {"big": {"size": 20_000}}})
    assert config.variants["big"].size == 20_000
