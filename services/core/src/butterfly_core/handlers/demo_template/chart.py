"""The geometry of the requests-per-minute bar chart, drawn as inline SVG by the template.

Computed here, not in the template, so the template only places numbers: no script, no
library, nothing fetched; the page reads the same with JavaScript off.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 40  # room for the axis labels
X_LABELS = 6  # minute labels under the x axis, at most


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    minute: str
    count: int


@dataclass(frozen=True)
class Tick:
    pos: float  # y for the value axis, x for the time axis
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width


def _nice_max(peak: int) -> int:
    """The y axis' top: ``peak`` rounded up to 1, 2 or 5 times a power of ten (at least 4,
    so the four grid lines fall on whole numbers)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor * 4 >= peak:
                return max(4, step * factor * 4)
        step *= 10


def bar_chart(series: list[tuple[str, int]]) -> Chart:
    """Bars of ``(minute label, count)`` in order, with a labelled value and time axis."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _nice_max(max((n for _, n in series), default=0))
    slot = plot_w / max(1, len(series))
    gap = slot * 0.2 if slot >= 4 else 0.0
    bars = []
    for i, (minute, count) in enumerate(series):
        h = plot_h * count / top_value
        bars.append(Bar(round(LEFT + i * slot + gap / 2, 2), round(TOP + plot_h - h, 2),
                        round(max(slot - gap, 0.5), 2), round(h, 2), minute, count))
    y_ticks = [Tick(round(TOP + plot_h - plot_h * k / 4, 2), str(top_value * k // 4))
               for k in range(5)]
    every = max(1, -(-len(series) // X_LABELS))
    x_ticks = [Tick(round(LEFT + (i + 0.5) * slot, 2), minute[11:16])
               for i, (minute, _) in enumerate(series) if i % every == 0]
    return Chart(WIDTH, HEIGHT, LEFT, TOP, plot_w, plot_h, bars, y_ticks, x_ticks)
