"""Inline SVG charts rendered on the server: no JavaScript, no external files, scale with the page.

A chart is a row of ``n`` slots with series drawn as bars, outlined bars, lines or steps against a left
axis and optionally a right one (e.g. load in W on the left, price on the right).

>>> svg = chart(3, [Series([1.0, None, 3.0], "bars", "#0a7d5a", "load")], [(0, "00"), (2, "02")], str, title="t")
>>> svg.startswith("<svg") and svg.count("<rect class=") == 2 and "<title>t</title>" in svg
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Literal

WIDTH, HEIGHT = 360, 200  # a card's chart; wide cards pass width=WIDE
WIDE = 900
TOP, BOTTOM = 10, 24
FONT = 11


@dataclass(frozen=True)
class Series:
    values: list
    kind: Literal["bars", "outline", "line", "step"]
    colour: str
    label: str
    axis: Literal["left", "right"] = "left"
    dashed: bool = False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(values) -> list[float]:
    return [float(v) for v in values if _is_number(v)]


def nice_range(values: list[float]) -> tuple[float, float, float]:
    """(low, high, step) of about four round ticks covering 0 and ``values``."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if high - low <= 0:
        high = low + 1.0
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def chart(
    n: int,
    series: list[Series],
    x_ticks: list[tuple[int, str]],
    left_format: Callable[[float], str],
    right_format: Callable[[float], str] | None = None,
    *,
    title: str,
    width: int = WIDTH,
    height: int = HEIGHT,
    css_class: str = "chart",
) -> str:
    """An SVG of ``n`` slots; ``x_ticks`` are ``(slot index, label)`` pairs."""
    left_pad = 8 + FONT * 0.62 * max([len(left_format(v)) for v in _ticks(series, "left")] or [3])
    right_ticks = _ticks(series, "right") if right_format else []
    right_pad = 8 + FONT * 0.62 * max([len(right_format(v)) for v in right_ticks] or [0]) if right_format else 8
    x0, x1, y0, y1 = left_pad, width - right_pad, TOP, height - BOTTOM
    slot_w = (x1 - x0) / max(n, 1)
    parts = [
        f'<svg class="{css_class}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="{FONT}"><title>{escape(title)}</title>'
    ]
    scales = {}
    for axis in ("left", "right"):
        values = [v for s in series if s.axis == axis for v in _finite(s.values)]
        if not values and axis == "right":
            continue
        low, high, step = nice_range(values)
        scales[axis] = (low, high, (y1 - y0) / (high - low))
        fmt = left_format if axis == "left" else right_format
        if fmt is None:
            continue
        tick = low
        while tick <= high + step / 2:
            y = y1 - (tick - low) * scales[axis][2]
            if axis == "left":
                parts.append(f'<line class="grid" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
                parts.append(f'<text x="{x0 - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
            else:
                parts.append(f'<text x="{x1 + 4:.1f}" y="{y + 4:.1f}">{escape(fmt(tick))}</text>')
            tick += step
    for index, label in x_ticks:
        x = x0 + index * slot_w
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{y1:.1f}" y2="{y1 + 4:.1f}"/>')
        anchor = "end" if x > x1 - 12 else "middle"  # the last label stays inside the picture
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}">{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y1:.1f}" y2="{y1:.1f}"/>')
    for s in series:
        if s.axis not in scales:  # nothing finite to draw
            continue
        low, _, scale = scales[s.axis]

        def y_of(v, low=low, scale=scale):
            return y1 - (v - low) * scale

        parts.extend(_draw(s, n, x0, slot_w, y_of, y_of(max(low, 0.0))))
    parts.append("</svg>")
    return "".join(parts)


def wide_chart(
    n: int,
    series: list[Series],
    x_ticks: list[tuple[int, str]],
    left_format: Callable[[float], str],
    right_format: Callable[[float], str] | None = None,
    *,
    title: str,
) -> str:
    """A full-width chart: a card-sized picture for phones and a wide one for larger screens (CSS picks
    one), so the labels stay readable on both."""
    return chart(n, series, x_ticks, left_format, right_format, title=title, css_class="chart only-narrow") + chart(
        n, series, x_ticks, left_format, right_format, title=title, width=WIDE, height=240, css_class="chart only-wide"
    )


def _ticks(series: list[Series], axis: str) -> list[float]:
    values = [v for s in series if s.axis == axis for v in _finite(s.values)]
    if not values:
        return []
    low, high, step = nice_range(values)
    return [low + i * step for i in range(int(round((high - low) / step)) + 1)]


def _draw(s: Series, n: int, x0: float, slot_w: float, y_of, base: float) -> list[str]:
    colour, dash = escape(s.colour), ' stroke-dasharray="5 3"' if s.dashed else ""
    points = [(i, float(v)) for i, v in enumerate(s.values[:n]) if _is_number(v)]
    if s.kind in ("bars", "outline"):
        gap = min(2.0, slot_w * 0.2)
        fill = f'fill="{colour}"' if s.kind == "bars" else f'fill="none" stroke="{colour}" stroke-width="1.2"'
        return [
            f'<rect class="{s.kind}" x="{x0 + i * slot_w + gap / 2:.1f}" y="{min(y_of(v), base):.1f}" '
            f'width="{max(slot_w - gap, 0.5):.1f}" height="{abs(base - y_of(v)):.1f}" {fill}/>'
            for i, v in points
        ]
    out, run = [], []
    for i, v in enumerate(s.values[:n]):
        if _is_number(v):
            run.append((i, float(v)))
            continue
        out.append(_path(run, s, x0, slot_w, y_of, colour, dash))
        run = []
    out.append(_path(run, s, x0, slot_w, y_of, colour, dash))
    return [p for p in out if p]


def _path(run, s: Series, x0, slot_w, y_of, colour, dash) -> str:
    if not run:
        return ""
    if s.kind == "step":
        coords = [c for i, v in run for c in ((x0 + i * slot_w, y_of(v)), (x0 + (i + 1) * slot_w, y_of(v)))]
    else:
        coords = [(x0 + (i + 0.5) * slot_w, y_of(v)) for i, v in run]
        if len(coords) == 1:
            coords.append((coords[0][0] + 0.1, coords[0][1]))
    d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    return f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash} stroke-linejoin="round"/>'


def hour_ticks(n: int, first_hour: int, hours: float = 24, every_h: int = 6) -> list[tuple[int, str]]:
    """``HH:00`` labels every ``every_h`` hours for ``n`` equal slots covering ``hours`` from ``first_hour``."""
    per_hour = n / hours if hours > 0 else n / 24
    return [(round(h * per_hour), f"{(first_hour + h) % 24:02d}:00") for h in range(0, int(hours) + 1, every_h)]


def legend(series: list[Series]) -> str:
    """HTML legend (outside the SVG, so it wraps and scales like text)."""
    items = []
    for s in series:
        style = (
            f"border:2px solid {escape(s.colour)};background:transparent"
            if s.kind == "outline"
            else f"background:{escape(s.colour)}"
            if s.kind == "bars"
            else f"border-top:3px {'dashed' if s.dashed else 'solid'} {escape(s.colour)};height:0"
        )
        items.append(f'<li><span class="key" style="{style}"></span>{escape(s.label)}</li>')
    return f'<ul class="legend">{"".join(items)}</ul>'
