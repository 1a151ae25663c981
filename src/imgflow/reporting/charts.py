"""Charts drawn with matplotlib and returned as inline SVG text.

matplotlib is imported on first use, so commands that draw nothing do not
pay for its import. Figures use the non-interactive Agg backend and a fixed
hash salt, so the same data gives the same SVG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH_INCHES = 7.5
HEIGHT_INCHES = 3.6


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "imgflow",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    import matplotlib.pyplot as plt

    return plt


def _svg(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    # Drop the XML prolog and DOCTYPE so the SVG can sit inside an HTML page.
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    annotate: str = "{:.2f}",
) -> str:
    """Draw one bar per label, each annotated with its value."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES))
    bars = axes.bar(list(labels), list(values), color="#4c78a8")
    axes.bar_label(bars, labels=[annotate.format(v) for v in values], padding=2)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(axis="x", visible=False)
    return _svg(figure)


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    step: bool = False,
    hline: tuple[float, str] | None = None,
) -> str:
    """Draw one line per named series of (x values, y values).

    `hline` adds a dashed horizontal reference line with its label, such as
    a latency budget.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES))
    for name, (xs, ys) in series.items():
        if step:
            axes.step(list(xs), list(ys), where="post", label=name)
        else:
            axes.plot(list(xs), list(ys), label=name)
    if hline is not None:
        value, label = hline
        axes.axhline(value, linestyle="--", color="#e45756", label=label)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if len(series) > 1 or hline is not None:
        axes.legend(loc="best", frameon=False)
    return _svg(figure)


def distribution_chart(
    samples: Mapping[str, Sequence[float]], *, title: str, ylabel: str
) -> str:
    """Draw a box plot per named sample, with every value as a point.

    Boxes span the quartiles and whiskers reach the 5th and 95th
    percentiles, so the tail that p95 reports is visible.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES))
    names = [name for name, values in samples.items() if len(values)]
    data = [list(samples[name]) for name in names]
    if data:
        axes.boxplot(data, whis=(5, 95), showfliers=False)
        axes.set_xticks(range(1, len(names) + 1), names)
        for position, values in enumerate(data, start=1):
            offsets = [
                position + 0.18 * ((i % 7) / 6 - 0.5) for i in range(len(values))
            ]
            axes.scatter(offsets, values, s=6, alpha=0.45, color="#4c78a8")
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(axis="x", visible=False)
    return _svg(figure)
