"""A small builder for self-contained HTML report pages.

Pages embed their charts as inline SVG and carry their own style sheet,
so a report is one file that opens offline and can be attached to a
ticket. Every text value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: 0.9rem; }
figure svg { max-width: 100%; height: auto; }
.note { color: #555; }
"""


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


class Page:
    """An HTML page assembled from headings, text, tables and figures."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str) -> None:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self._parts.append(f"<p{css}>{html.escape(text)}</p>")

    def bullets(self, items: Iterable[str]) -> None:
        rows = "".join(f"<li>{html.escape(item)}</li>" for item in items)
        self._parts.append(f"<ul>{rows}</ul>")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>"
            for row in rows
        )
        self._parts.append(f"<table><thead><tr>{head}</tr></thead>{body}</table>")

    def figure(self, svg: str, caption: str) -> None:
        """Add a chart; `svg` is trusted markup from `imgflow.reporting.charts`."""
        self._parts.append(
            f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        body = "\n".join(self._parts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style>"
            f"</head><body>\n{body}\n</body></html>\n"
        )

    def write(self, path: Path, option: str) -> None:
        """Write the page atomically, so a reader never sees half a page.

        Raises UsageError naming the command-line `option` on failure.
        """
        from imgflow.outdir import write_output_file

        write_output_file(path, self.render().encode(), option)
