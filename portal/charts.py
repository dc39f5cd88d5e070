"""A bar chart of usage per day, as inline SVG, drawn on the server (no script, no CDN).

Pure: takes (label, value) pairs, returns the SVG text with every piece of text escaped."""

from __future__ import annotations

from decimal import Decimal
from html import escape

WIDTH, HEIGHT = 640, 180
LEFT, BOTTOM, TOP = 48, 24, 12


def plain_number(value: Decimal) -> str:
    """1500, 12.5, 0.04: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f") if value else "0"
    return text.rstrip("0").rstrip(".") if "." in text else text


def bar_chart_svg(points: list[tuple[str, Decimal]], *, title: str, unit: str = "") -> str:
    """One bar per point, the tallest filling the plot; each bar's exact value in its <title> (a tooltip
    and what screen readers read). The labels of the first, middle and last bar are written below."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    peak = max((value for _, value in points), default=Decimal(0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" class="axis"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end" class="tick">{escape(plain_number(peak))}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    if points:
        step = plot_w / len(points)
        gap = min(step * 0.2, 4)
        labelled = {0, len(points) // 2, len(points) - 1}
        for index, (label, value) in enumerate(points):
            height = float(value / peak) * plot_h if peak else 0.0
            x = LEFT + index * step + gap / 2
            y = TOP + plot_h - height
            tip = f"{label}: {plain_number(value)}{(' ' + unit) if unit else ''}"
            parts.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(step - gap, 1):.2f}" height="{height:.2f}" '
                f'class="bar" data-value="{escape(plain_number(value))}"><title>{escape(tip)}</title></rect>'
            )
            if index in labelled:
                parts.append(
                    f'<text x="{x + (step - gap) / 2:.2f}" y="{HEIGHT - 6}" text-anchor="middle" class="tick">'
                    f"{escape(label)}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)
