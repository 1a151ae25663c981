"""Transform stage: plan the geometry of every variant, then render them.

Planning is pure arithmetic on the displayed size (after EXIF orientation),
so it is tested without images. Rendering decodes once: the engine shrinks on
load to the smallest size that still serves the most demanding variant, keeps
that base in memory, and derives every variant from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imgflow.config import Fit, PipelineConfig, Variant

STAGE = "transform"


@dataclass(frozen=True, slots=True)
class VariantPlan:
    """Target geometry of one variant: scale to `resize`, then cut `crop`."""

    name: str
    variant: Variant
    resize: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop[2], self.crop[3]
        return self.resize


@dataclass(frozen=True, slots=True)
class Rendered:
    """One encoded variant, ready to store."""

    name: str
    data: bytes
    width: int
    height: int
    format: str
    suffix: str
    engine: str = "vips"


def _scaled(length: int, scale: float) -> int:
    # Never 0: a 10000x1 strip shrunk to a 256 box stays 1 pixel tall.
    return max(1, round(length * scale))


def plan_variant(name: str, variant: Variant, width: int, height: int) -> VariantPlan:
    """Compute the output size of `variant` for an image of width x height."""
    box_w, box_h = variant.box
    limit = math.inf if variant.upscale else 1.0

    if variant.fit is Fit.EXACT:
        assert box_w is not None and box_h is not None
        target_w = box_w if variant.upscale else min(box_w, width)
        target_h = box_h if variant.upscale else min(box_h, height)
        return VariantPlan(name, variant, (target_w, target_h))

    scale_w = box_w / width if box_w is not None else math.inf
    scale_h = box_h / height if box_h is not None else math.inf
    if variant.fit is Fit.INSIDE:
        scale = min(scale_w, scale_h, limit)
        return VariantPlan(
            name, variant, (_scaled(width, scale), _scaled(height, scale))
        )

    assert box_w is not None and box_h is not None
    scale = min(max(scale_w, scale_h), limit)
    resized = (_scaled(width, scale), _scaled(height, scale))
    crop_w, crop_h = min(box_w, resized[0]), min(box_h, resized[1])
    left = (resized[0] - crop_w) // 2
    top = (resized[1] - crop_h) // 2
    return VariantPlan(name, variant, resized, (left, top, crop_w, crop_h))


def plan_variants(config: PipelineConfig, width: int, height: int) -> list[VariantPlan]:
    return [
        plan_variant(name, variant, width, height)
        for name, variant in config.variants.items()
    ]


def encoding_key(plan: VariantPlan) -> tuple[object, ...]:
    """Identify the encoded output of a plan, apart from its name.

    Two plans with equal keys produce identical files, so an engine may
    encode them once.
    """
    variant = plan.variant
    return (
        plan.resize,
        plan.crop,
        variant.format,
        variant.quality,
        variant.progressive,
        variant.effort,
    )


def base_size(plans: list[VariantPlan], width: int, height: int) -> tuple[int, int]:
    """Smallest decode size, aspect kept, from which every plan downsamples.

    Capped at the full size: variants that upscale do so from the full decode.
    """
    scale = max(max(p.resize[0] / width, p.resize[1] / height) for p in plans)
    scale = min(scale, 1.0)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))
