"""The overview's charts as inline SVG, drawn on the server: no chart library, no script."""

from dataclasses import dataclass

from markupsafe import Markup, escape

from ops.queue import MinuteOutcomes

_WIDTH = 600
_HEIGHT = 120
_TOP = 4


@dataclass(frozen=True, slots=True)
class Series:
    css_class: str
    label: str
    values: list[float]


def _bars(series: list[Series], title: str, unit: str, minutes: list[str]) -> Markup:
    """Stacked bars, one per minute; each bar has a <title> for the minute and its values."""
    count = len(minutes)
    totals = [sum(s.values[i] for s in series) for i in range(count)]
    top = max(totals, default=0) or 1
    slot = _WIDTH / max(count, 1)
    scale = (_HEIGHT - _TOP) / top
    parts = [
        f'<span class="axis">max {top:g} {escape(unit)}</span>',
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img"'
        f' aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
        f'<line class="base" x1="0" y1="{_HEIGHT}" x2="{_WIDTH}" y2="{_HEIGHT}"/>',
    ]
    for index in range(count):
        y = float(_HEIGHT)
        tip = ", ".join(f"{s.label} {s.values[index]:g}" for s in series)
        parts.append(f"<g><title>{escape(minutes[index])}: {escape(tip)}</title>")
        for s in series:
            height = s.values[index] * scale
            if height <= 0:
                continue
            y -= height
            parts.append(
                f'<rect class="{s.css_class}" x="{index * slot + 0.5:.1f}" y="{y:.1f}"'
                f' width="{max(slot - 1, 0.5):.1f}" height="{height:.1f}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only


def throughput_chart(minutes: list[MinuteOutcomes]) -> Markup:
    labels = [f"{m.minute:%H:%M}" for m in minutes]
    complete = [float(m.outcomes.get("complete", 0)) for m in minutes]
    failed = [float(m.outcomes.get("failed", 0) + m.outcomes.get("cancelled", 0)) for m in minutes]
    retried = [float(m.outcomes.get("retried", 0)) for m in minutes]
    return _bars(
        [
            Series("ok", "complete", complete),
            Series("retry", "retried", retried),
            Series("bad", "failed", failed),
        ],
        "Job runs per minute over the last hour",
        "runs/min",
        labels,
    )


def run_time_chart(minutes: list[MinuteOutcomes]) -> Markup:
    labels = [f"{m.minute:%H:%M}" for m in minutes]
    mean_ms = [round((m.mean_run_s or 0) * 1000, 1) for m in minutes]
    return _bars(
        [Series("time", "mean ms", mean_ms)],
        "Mean run time per minute over the last hour",
        "ms",
        labels,
    )
