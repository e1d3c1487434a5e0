"""Small server-side SVG charts for the dashboard: no JavaScript, nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 28


def stacked_bars(
    *,
    labels: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[int]]],
    title: str,
) -> SafeString:
    """One bar per label, stacked by series (label, colour, values); a legend below.

    Each bar segment carries a <title> (the browser's tooltip) with its count.
    """
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    slot = plot_w / max(len(labels), 1)
    bar_w = max(slot * 0.7, 1)
    parts: list[str] = []
    for tick in (0, top // 2, top):
        y = TOP + plot_h - plot_h * tick / top
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                round(y, 1),
                round(y, 1),
                LEFT - 4,
                round(y + 4, 1),
                tick,
            )
        )
    for i, label in enumerate(labels):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = TOP + plot_h
        local = timezone.localtime(label)
        for name, colour, values in series:
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" class="bar" '
                    'data-series="{}"><title>{}h: {} {}</title></rect>',
                    round(x, 1),
                    round(base, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    colour,
                    name,
                    local.strftime("%H"),
                    value,
                    name,
                )
            )
        if i % 3 == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" class="axis" text-anchor="middle">{}h</text>',
                    round(x + bar_w / 2, 1),
                    HEIGHT - 10,
                    local.strftime("%H"),
                )
            )
    legend = format_html_join(
        "",
        '<span class="legend-item"><i style="background:{}"></i>{}</span>',
        ((colour, name) for name, colour, _ in series),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>'
        '<div class="legend">{}</div>',
        WIDTH,
        HEIGHT,
        title,
        title,
        SafeString("".join(parts)),
        legend,
    )


def _nice_max(value: int) -> int:
    """The smallest round number (1, 2 or 5 times a power of ten, even) at or above value."""
    if value <= 2:
        return 2
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        candidate = step * magnitude
        if candidate >= value:
            return candidate if candidate % 2 == 0 else candidate * 2
    return 10 * magnitude
