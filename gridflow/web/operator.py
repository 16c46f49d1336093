"""The operator view: feeder load over the day, the clusters' typical shapes and recent alerts across
households. Input is :meth:`PageStore.overview`'s snapshot."""

from __future__ import annotations

from html import escape

from gridflow.web import fmt
from gridflow.web.charts import Series, chart, hour_ticks, legend, wide_chart
from gridflow.web.household import alert_html
from gridflow.web.layout import ACCENT, PRICE, TYPICAL, page, stat
from gridflow.web.store import ALL_FEEDERS

FEEDER_COLOURS = (TYPICAL, PRICE, "#2563eb", "#db2777", "#65a30d", "#0891b2")
ALERTS_SHOWN = 50


def render_operator(view: dict, *, timezone: str, refresh_s: int, controls: str = "", tools: str = "") -> str:
    """The operator view; ``controls`` (header) and ``tools`` (a card, e.g. revoking access) are trusted HTML."""
    clock = fmt.LocalTime(timezone)
    now_w = view.get("now_w") or {}
    stats = (
        stat("Households", str(view.get("households", 0)))
        + stat("Feeder load now", fmt.power(now_w.get(ALL_FEEDERS)), "sum of the latest readings")
        + stat("Recent alerts", str(len(view.get("alerts") or [])))
        + stat("Clusters", str(len(view.get("clusters") or [])))
    )
    body = (
        f'<section class="stats">{stats}</section>'
        '<p><a href="/operator/history">History</a>: feeder peaks per day, alerts per week, cluster shapes over time</p>'
        '<div class="grid">'
        + _feeder_card(view)
        + _clusters_card(view.get("clusters") or [])
        + _alerts_card(view, clock)
        + tools
        + "</div>"
    )
    subtitle = f"Feeder day {view['day']}" if view.get("day") else "Waiting for meter data"
    return page("Operator - gridflow", "Operator view", subtitle, body, refresh_s=refresh_s, controls=controls)


def _feeder_card(view) -> str:
    feeders = view.get("feeders") or {}
    total = feeders.get(ALL_FEEDERS)
    if not total:
        return '<section class="card wide"><h2>Feeder load today</h2><p class="muted">No meter data yet.</p></section>'
    series = [Series(total, "bars", ACCENT, "All households")]
    others = sorted(name for name in feeders if name != ALL_FEEDERS)
    series += [
        Series(feeders[name], "line", FEEDER_COLOURS[i % len(FEEDER_COLOURS)], f"Feeder {name}")
        for i, name in enumerate(others)
    ]
    svg = wide_chart(len(total), series, hour_ticks(len(total), 0), fmt.power, title="Feeder load over the day")
    peak = max((v for v in total if isinstance(v, (int, float))), default=None)
    return (
        f'<section class="card wide"><h2>Feeder load today</h2>{svg}{legend(series)}'
        f"<p>Sum over households of their average load per {view.get('bin_minutes', 15)} minutes; "
        f"highest so far {fmt.power(peak)}.</p></section>"
    )


def _clusters_card(clusters: list) -> str:
    if not clusters:
        return '<section class="card wide"><h2>Clusters</h2><p class="muted">No clusters published yet.</p></section>'
    figures = []
    for c in clusters:
        norm = c.get("profile_norm") or []
        size = c.get("size")
        caption = (
            f"Cluster {c['cluster']} · {size if size is not None else '?'} households"
            f" ({c.get('members_here', 0)} seen here)"
        )
        svg = (
            chart(
                len(norm),
                [Series(norm, "line", ACCENT, "shape")],
                hour_ticks(len(norm), 0, every_h=12),
                lambda v: f"{v:.1f}×",
                title=caption,
                width=280,
                height=130,
            )
            if norm
            else '<p class="muted">no shape yet</p>'
        )
        figures.append(f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>")
    return (
        f'<section class="card wide"><h2>Clusters</h2><p class="muted">Typical daily shape of each cluster '
        f'(load relative to the household\'s own daily mean).</p><div class="clusters">{"".join(figures)}</div>'
        f"</section>"
    )


def _alerts_card(view, clock) -> str:
    alerts = (view.get("alerts") or [])[:ALERTS_SHOWN]
    if not alerts:
        return '<section class="card wide"><h2>Recent alerts</h2><p class="muted">No alerts.</p></section>'
    return (
        f'<section class="card wide"><h2>Recent alerts</h2>'
        f"{''.join(alert_html(a, clock, household=True) for a in alerts)}</section>"
    )
