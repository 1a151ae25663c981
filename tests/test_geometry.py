"""Variant geometry planning, checked over many sizes with Hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imgflow.config import Fit, Variant
from imgflow.stages.transform import base_size, plan_variant

sides = st.integers(min_value=1, max_value=60_000)
boxes = st.integers(min_value=1, max_value=4096)


@given(width=sides, height=sides, box=boxes)
def test_inside_fits_box_without_zero_side(width: int, height: int, box: int) -> None:
    """An inside fit stays within the box, keeps both sides >= 1 and never upscales."""
    plan = plan_variant("v", Variant(size=box), width, height)
    out_w, out_h = plan.size
    assert 1 <= out_w <= max(1, min(box, width))
    assert 1 <= out_h <= max(1, min(box, height))
    assert max(out_w, out_h) == min(box, max(width, height)) or min(out_w, out_h) == 1


@given(width=sides, height=sides, box_w=boxes, box_h=boxes)
def test_cover_fills_box_when_large(
    width: int, height: int, box_w: int, box_h: int
) -> None:
    """A cover fit of a large enough image is exactly the box."""
    variant = Variant(width=box_w, height=box_h, fit=Fit.COVER)
    plan = plan_variant("v", variant, width, height)
    if width >= box_w and height >= box_h:
        assert plan.size == (box_w, box_h)
    assert plan.size[0] <= box_w
    assert plan.size[1] <= box_h
    assert plan.crop is not None
    left, top, crop_w, crop_h = plan.crop
    assert left + crop_w <= plan.resize[0]
    assert top + crop_h <= plan.resize[1]


@given(width=sides, height=sides, box_w=boxes, box_h=boxes)
def test_exact_never_upscales(width: int, height: int, box_w: int, box_h: int) -> None:
    """An exact fit stretches to the box, capped at the source size."""
    plan = plan_variant(
        "v", Variant(width=box_w, height=box_h, fit=Fit.EXACT), width, height
    )
    assert plan.size == (min(box_w, width), min(box_h, height))


@given(width=sides, height=sides, box=boxes)
def test_upscale_reaches_box(width: int, height: int, box: int) -> None:
    """With upscale set, the long edge always equals the box."""
    plan = plan_variant("v", Variant(size=box, upscale=True), width, height)
    assert max(plan.size) == box or min(plan.size) == 1


@given(width=sides, height=sides, boxes=st.lists(boxes, min_size=1, max_size=4))
def test_base_serves_every_variant(width: int, height: int, boxes: list[int]) -> None:
    """The decode size is never smaller than any variant, nor larger than the source."""
    plans = [
        plan_variant(f"v{i}", Variant(size=b), width, height)
        for i, b in enumerate(boxes)
    ]
    base_w, base_h = base_size(plans, width, height)
    assert base_w <= width
    assert base_h <= height
    for plan in plans:
        assert plan.resize[0] <= base_w
        assert plan.resize[1] <= base_h


def test_width_only_box() -> None:
    """A box with only a width leaves the height free."""
    plan = plan_variant("v", Variant(width=300), 4000, 3000)
    assert plan.size == (300, 225)
