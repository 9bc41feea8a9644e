"""Server-rendered SVG charts: no chart library, nothing loaded from elsewhere.

Every label is escaped (labels can be anything a caller said a category or place was); every
chart carries a <title> and <desc> for screen readers, and the pages show the same figures in a
table next to it. Colours come from classes in console.css; only opacity varies per element
(presentation attributes are allowed by the console's Content-Security-Policy, inline styles
are not).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

_FONT = 12
_IDS = itertools.count(1)  # unique ids for aria-labelledby within a page


def _num(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}".replace(",", ".")
    return f"{value:,.1f}".replace(",", "X").replace(".", ",").replace("X", ".")


def _nice_step(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k (k >= 0: counts are whole) that is >= value."""
    if value <= 1:
        return 1
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _svg(width: int, height: int, title: str, desc: str, body: list[str], cls: str) -> Markup:
    ident = f"chart{next(_IDS)}"
    head = (
        f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img"'
        f' aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _linked(svg: str, href: str | None) -> str:
    """A bar that opens the matching list when clicked."""
    return f'<a href="{escape(href)}">{svg}</a>' if href else svg


def column_chart(
    data: Sequence[tuple[str, float]],
    title: str,
    *,
    width: int = 960,
    height: int = 260,
    links: Sequence[str | None] | None = None,
    highlight: int | None = None,
) -> Markup:
    """Vertical bars (calls per day). Labels under every bar when they fit, else every n-th.
    `links[i]` makes bar i a link; bar `highlight` (today) is drawn and labelled apart."""
    left, right, top, bottom = 40, 10, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    # Four whole-number steps: the gridlines fall on counts a person would say.
    top_value = 4 * _nice_step(max((v for _, v in data), default=0) / 4)
    n = max(len(data), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1)
    every = max(1, math.ceil(n / max(plot_w // 46, 1)))
    body: list[str] = []
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        body.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        body.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end"'
            f' font-size="{_FONT - 1}">{_num(top_value * i / 4)}</text>'
        )
    for i, (label, value) in enumerate(data):
        h = plot_h * value / top_value if top_value else 0
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        cls = "bar today" if i == highlight else "bar"
        rect = (
            f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {_num(value)}</title></rect>"
        )
        body.append(_linked(rect, links[i] if links and i < len(links) else None))
        if i == highlight:
            body.append(
                f'<text class="today-label" x="{x + bar_w / 2:.1f}" y="{top + plot_h + 32}"'
                f' text-anchor="middle" font-size="{_FONT - 1}">Hôm nay</text>'
            )
        if value and n <= 31:
            body.append(
                f'<text class="value" x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle"'
                f' font-size="{_FONT - 2}">{_num(value)}</text>'
            )
        if i % every == 0:
            body.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}"'
                f' text-anchor="middle" font-size="{_FONT - 1}">{escape(label)}</text>'
            )
    total = sum(v for _, v in data)
    desc = f"{len(data)} cột, tổng {_num(total)}" + (
        f"; cao nhất {_num(max(v for _, v in data))}" if data else ""
    )
    return _svg(width, height, title, desc, body, "columns")


def bar_chart(
    data: Sequence[tuple[str, float]],
    title: str,
    *,
    width: int = 520,
    suffix: str = "",
    total: float | None = None,
    links: Sequence[str | None] | None = None,
) -> Markup:
    """Horizontal bars with the value (and its share of `total`, if given) after each bar."""
    label_w, value_w, row_h, top = int(min(260, width * 0.4)), 90, 28, 8
    height = top * 2 + row_h * max(len(data), 1)
    plot_w = width - label_w - value_w
    top_value = max((v for _, v in data), default=0) or 1
    body: list[str] = []
    for i, (label, value) in enumerate(data):
        y = top + i * row_h
        w = plot_w * value / top_value
        fits = max(8, label_w // 7)
        short = label if len(label) <= fits else label[: fits - 1] + "…"
        share = f" ({value / total:.0%})" if total else ""
        body.append(
            f'<text class="label" x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end"'
            f' font-size="{_FONT}">{escape(short)}<title>{escape(label)}</title></text>'
        )
        rect = (
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{max(w, 1 if value else 0):.1f}"'
            f' height="{row_h - 8}"><title>{escape(label)}: {_num(value)}{escape(suffix)}</title></rect>'
        )
        body.append(_linked(rect, links[i] if links and i < len(links) else None))
        body.append(
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + row_h / 2 + 4:.1f}"'
            f' font-size="{_FONT}">{_num(value)}{escape(suffix)}{share}</text>'
        )
    if not data:
        body.append(
            f'<text class="axis" x="{width / 2}" y="{top + row_h / 2 + 4}" text-anchor="middle"'
            f' font-size="{_FONT}">Chưa có số liệu</text>'
        )
    desc = "; ".join(f"{label}: {_num(v)}{suffix}" for label, v in data) or "Chưa có số liệu"
    return _svg(width, height, title, desc, body, "bars")


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    counts: dict[tuple[str, str], int],
    title: str,
) -> Markup:
    """Confusion matrix: rows are what the NLU said, columns what operators corrected it to."""
    cell, label_w, label_h = 40, 190, 150
    width = label_w + cell * max(len(cols), 1) + 10
    height = label_h + cell * max(len(rows), 1) + 10
    top = max(counts.values(), default=0) or 1
    body: list[str] = []
    for j, col in enumerate(cols):
        x = label_w + j * cell + cell / 2
        body.append(
            f'<text class="axis" transform="translate({x:.1f},{label_h - 6}) rotate(-55)"'
            f' font-size="{_FONT - 1}">{escape(col)}</text>'
        )
    for i, row in enumerate(rows):
        y = label_h + i * cell
        body.append(
            f'<text class="axis" x="{label_w - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end"'
            f' font-size="{_FONT - 1}">{escape(row)}</text>'
        )
        for j, col in enumerate(cols):
            n = counts.get((row, col), 0)
            x = label_w + j * cell
            opacity = 0.08 + 0.92 * n / top if n else 0.03
            body.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}"'
                f' fill-opacity="{opacity:.2f}"><title>{escape(row)} → {escape(col)}: {n}</title></rect>'
            )
            if n:
                dark = " dark" if n / top > 0.5 else ""
                body.append(
                    f'<text class="cellnum{dark}" x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}"'
                    f' text-anchor="middle" font-size="{_FONT}">{n}</text>'
                )
    desc = "; ".join(f"{a} → {b}: {n}" for (a, b), n in counts.items()) or "Chưa có sửa nhãn"
    return _svg(width, height, title, desc, body, "heatmap")
