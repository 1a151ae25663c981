"""Configuration: validation messages and the documented reference."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from imgflow.config import (
    OutputConfig,
    PipelineConfig,
    TransformConfig,
    ValidateConfig,
    Variant,
    load_config,
    parse_config,
    settings_of,
)
from imgflow.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"validate": {"max_pixels": 0}}, "validate.max_pixels"),
        ({"validate": {"allowed_formats": ["jpeg", "bmpx"]}}, "unknown format 'bmpx'"),
        ({"transform": {"background": "white"}}, 'expected a colour like "#ffffff"'),
        ({"variants": {}}, "at least one variant"),
        ({"variants": {"Big Thumb": {"size": 5}}}, "variant name 'Big Thumb'"),
        ({"variants": {"_x": {"size": 5}}}, "starting with a letter or digit"),
        ({"variants": {"x" * 65: {"size": 5}}}, "must be 1 to 64"),
        ({"variants": {"t": {}}}, "set size, or width, height or both"),
        ({"variants": {"t": {"size": 5, "width": 4}}}, "not both"),
        (
            {"variants": {"t": {"width": 5, "fit": "cover"}}},
            "needs both width and height",
        ),
        ({"variants": {"t": {"size": 5, "format": "webp", "effort": 9}}}, "0-6"),
        ({"variants": {"t": {"size": 5, "quality": 101}}}, "variants.t.quality"),
        (
            {"output": {"keep_exf": True}},
            "output.keep_exf: unknown setting; expected one of keep_exif, keep_gps",
        ),
        ({"valdate": {}}, "valdate: unknown setting; expected one of validate,"),
        (
            {"output": {"fsync": "yes"}},
            'output.fsync: expected true or false (got "yes")',
        ),
        ({"variants": [{"size": 5}]}, "variants: expected a table (got [{size = 5}])"),
        (
            {"variants": {"t": {"size": 5, "format": "webp", "effort": 9}}},
            "variants.t.effort: must be 0-6",
        ),
        (
            {"variants": {"t": {"size": 5, "sise": 3}}},
            "variants.t.sise: unknown setting",
        ),
        (
            {"variants": {"t": {"size": 5, "format": "gif"}}},
            'variants.t.format: expected one of jpeg, webp, avif, png (got "gif")',
        ),
        ({"transform": {"animation": "all"}}, "expected one of first, keep"),
        ({"variants": {"t": {"size": True}}}, "variants.t.size: expected an integer"),
        ({"validate": {"allowed_formats": ["jpeg", 3]}}, "allowed_formats[1]"),
        ({"validate": {"max_file_bytes": 1.5}}, "(got 1.5)"),
        ({"output": {"keep_gps": True}}, "keep_gps = true needs keep_exif"),
    ],
)
def test_invalid_values_named(data: dict, expected: str) -> None:
    """Each invalid value raises ConfigError naming the key or the rule."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert expected in str(caught.value)


def test_invalid_values_each_variant_named() -> None:
    """Every broken variant is reported by name, with the other tables' error."""
    data = {
        "variants": {"a": {"size": 0}, "b": {"size": 5, "quality": 0}},
        "validate": {"max_pixels": -1},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert "variants.a.size: expected an integer >= 1 (got 0)" in message
    assert "variants.b.quality: expected an integer >= 1 (got 0)" in message
    assert "validate.max_pixels: expected an integer >= 1 (got -1)" in message


def test_every_bad_setting_reported() -> None:
    """Each bad setting gets its own line, rules on one setting included."""
    data = {
        "validate": {"max_pixels": 0, "allowed_formats": ["bmp"]},
        "transform": {"animation": "no", "background": "red"},
        "output": {"keep_exif": "yes"},
        "variants": {"t": {"size": 5, "quality": 500, "sise": 3}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    lines = str(caught.value).splitlines()[1:]
    keys = [line.strip().partition(": ")[0] for line in lines]
    assert keys == [
        "validate.max_pixels",
        "validate.allowed_formats",
        "transform.animation",
        "transform.background",
        "output.keep_exif",
        "variants.t.quality",
        "variants.t.sise",
    ]


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[transform]\nbackground = "#ffffff" # café\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text: byte 0xe9"):
        load_config(path)


def test_values_normalised() -> None:
    config = parse_config(
        {
            "validate": {"allowed_formats": ["JPEG"]},
            "transform": {"background": "#AABBCC"},
        }
    )
    assert config.validation.allowed_formats == ["jpeg"]
    assert config.transform.background == "#aabbcc"


def test_config_pickles_equal() -> None:
    """Workers receive the configuration pickled."""
    config = parse_config(
        {"variants": {"t": {"width": 300, "height": 200, "fit": "cover"}}}
    )
    assert pickle.loads(pickle.dumps(config)) == config


def test_json_form_unchanged() -> None:
    """Catalogs record this form, and a resumed run compares its digest."""
    expected = (
        '{"validate":{"allowed_formats":["jpeg","png","webp","gif","tiff","avif'
        '","heic"],"max_file_bytes":209715200,"max_pixels":100000000},"transfor'
        'm":{"background":"#ffffff","animation":"first","max_frames":300},"outp'
        'ut":{"keep_exif":false,"keep_gps":false,"keep_icc":true,"fsync":false}'
        ',"variants":{"thumb":{"size":256,"width":null,"height":null,"fit":"ins'
        'ide","format":"jpeg","quality":85,"progressive":false,"effort":4,"upsc'
        'ale":false},"medium":{"size":1024,"width":null,"height":null,"fit":"in'
        'side","format":"jpeg","quality":85,"progressive":false,"effort":4,"ups'
        'cale":false},"large":{"size":2048,"width":null,"height":null,"fit":"in'
        'side","format":"jpeg","quality":85,"progressive":false,"effort":4,"ups'
        'cale":false}}}'
    )
    assert PipelineConfig().to_json() == expected


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
        for name, _ in settings_of(model):
            assert f"`{section}.{name}`" in text, (
                f"{section}.{name} missing from README"
            )
    for name, _ in settings_of(Variant):
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


def test_config_file_with_byte_order_mark(tmp_path: Path) -> None:
    """A file saved with a UTF-8 byte order mark loads like one without."""
    path = tmp_path / "imgflow.toml"
    path.write_bytes("\ufeff[variants.thumb]\nsize = 200\n".encode())
    assert load_config(path).variants["thumb"].size == 200


def test_every_bad_variant_name_reported() -> None:
    data = {
        "variants": {"Thumb": {"size": 5}, "big one": {"size": "x"}, "ok": {"size": 5}}
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    message = str(caught.value)
    assert "variant name 'Thumb'" in message
    assert "variant name 'big one'" in message
    assert "variants.big one.size: expected an integer" in message
    assert "'ok'" not in message


def test_setting_unused_by_format_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A setting the variant's format ignores is accepted with a warning."""
    caplog.set_level(logging.WARNING, logger="imgflow.config")
    config = parse_config(
        {
            "variants": {
                "flat": {"size": 64, "format": "png", "quality": 90},
                "photo": {"size": 64, "format": "jpeg", "quality": 90},
            }
        }
    )
    assert config.variants["flat"].quality == 90
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "variants.flat.quality has no effect: png output does not use it, "
        "only jpeg, webp, avif do"
    ]
