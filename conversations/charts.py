"""A bar chart's geometry, computed server-side and drawn by the template as inline SVG.

No JavaScript chart library: the page stays one request, and the numbers are also given as a
table for screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .templatetags.usage_format import format_usd


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    slot_x: float
    slot_width: float
    tooltip: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[XLabel]
    description: str

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top

    @property
    def tick_label_x(self) -> int:
        return self.plot_left - 6

    @property
    def day_label_y(self) -> int:
        return self.plot_bottom + 18


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 3, 4, 5, 6, 8 × a power of ten that is ≥ value (axis tops read well)."""
    if value <= 0:
        return 0.0
    base = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * base * (1 + 1e-9):
            return step * base
    return 10 * base


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def daily_spend_chart(points: list[tuple[date, Decimal, int]], *, width: int = 720, height: int = 220) -> BarChart:
    """Bars of spend per day, oldest left; every bar has a tooltip, every 7th day (counting
    back from the last) a label."""
    left, right, top, bottom = 64, width - 8, 12, height - 28
    plot_width, plot_height = right - left, bottom - top
    peak = max((float(cost) for _, cost, _ in points), default=0.0)
    axis_top = nice_ceiling(peak)
    slot = plot_width / max(len(points), 1)
    bar_width = max(slot * 0.7, 1.0)
    bars, x_labels = [], []
    for index, (day, cost, calls) in enumerate(points):
        bar_height = plot_height * float(cost) / axis_top if axis_top else 0.0
        # A day with any spend stays visible however small it is next to the peak.
        if cost > 0:
            bar_height = max(bar_height, 1.0)
        slot_x = left + index * slot
        bars.append(Bar(
            x=round(slot_x + (slot - bar_width) / 2, 2), y=round(bottom - bar_height, 2), width=round(bar_width, 2), height=round(bar_height, 2),
            slot_x=round(slot_x, 2), slot_width=round(slot, 2),
            tooltip=f"{_day_label(day)}: {format_usd(cost)} ({calls} call{'' if calls == 1 else 's'})",
        ))
        if (len(points) - 1 - index) % 7 == 0:
            x_labels.append(XLabel(x=round(slot_x + slot / 2, 2), label=_day_label(day)))
    ticks = [Tick(y=float(bottom), label=format_usd(0))]
    if axis_top:
        ticks += [Tick(y=round(bottom - plot_height / 2, 2), label=format_usd(Decimal(str(axis_top / 2)))), Tick(y=float(top), label=format_usd(Decimal(str(axis_top))))]
    if points:
        total = sum((cost for _, cost, _ in points), Decimal(0))
        description = (
            f"Bar chart of spend per day from {_day_label(points[0][0])} to {_day_label(points[-1][0])}: "
            f"{format_usd(total)} in total, at most {format_usd(max(cost for _, cost, _ in points))} on one day."
        )
    else:
        description = "Bar chart of spend per day: no days."
    return BarChart(
        width=width, height=height, plot_left=left, plot_right=right, plot_top=top, plot_bottom=bottom,
        bars=bars, ticks=ticks, x_labels=x_labels, description=description,
    )
