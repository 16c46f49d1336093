"""The operator's history view (``/operator/history``), drawn from the Parquet history (``gridflow history``):
each feeder's peak load per local day against its capacity, alerts per type per week, and the clusters'
shapes over the days. Feeders are ``balancing.feeder_file``'s (the others on ``balancing.default_feeder``)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from gridflow.web import fmt
from gridflow.web.charts import Series, chart, hour_ticks, legend
from gridflow.web.layout import ACCENT, page

SHAPE_DAYS = 7  # days of cluster shapes drawn per cluster
SHAPE_COLOURS = ("#cbd5e1", "#94a3b8", "#64748b", "#475569", "#334155", "#1e293b", ACCENT)


def history_view(settings) -> dict:
    """``{"peaks": [(day, feeder, peak_w, at_ms)], "capacity_w": ..., "alerts": [(week, type, count)],
    "shapes": {cluster: [(day, shape)]}, "views": [...]}``; a part whose topic the history lacks is empty."""
    import pandas as pd

    from gridflow.balancing import load_feeders
    from gridflow.history.query import connect

    connection, views = connect(settings)
    zone = ZoneInfo(settings.preprocess.timezone)
    balancing = settings.balancing
    view: dict = {
        "views": views,
        "peaks": [],
        "alerts": [],
        "shapes": {},
        "capacity_w": balancing.feeder_capacity_kw * 1000,
    }
    if "features" in views:
        # a feeder's load per minute window: the sum of its household meters' means; its highest per local day
        feeders = load_feeders(balancing.feeder_file) if balancing.feeder_file else {}
        mapping = pd.DataFrame({"household_id": list(feeders), "feeder": list(feeders.values())}, dtype=str)
        connection.register("feeder_of", mapping)
        rows = connection.execute(
            "SELECT f.window_start_ms, coalesce(m.feeder, ?) AS feeder, sum(f.mean_w) FROM features f "
            "LEFT JOIN feeder_of m USING (household_id) GROUP BY ALL ORDER BY 1, 2",
            [balancing.default_feeder],
        ).fetchall()
        peaks: dict[tuple[str, str], tuple[float, int]] = {}
        for start_ms, feeder, total in rows:
            key = (datetime.fromtimestamp(start_ms / 1000, zone).strftime("%Y-%m-%d"), str(feeder))
            if key not in peaks or total > peaks[key][0]:
                peaks[key] = (float(total), int(start_ms))
        view["peaks"] = [(day, feeder, w, at) for (day, feeder), (w, at) in sorted(peaks.items())]
    if "alerts" in views:
        view["alerts"] = [
            (str(week), kind, int(n))
            for week, kind, n in connection.execute(
                "SELECT strftime(date_trunc('week', epoch_ms(ts_ms)), '%G-W%V') AS week, type, count(*) "
                "FROM alerts GROUP BY ALL ORDER BY week, type"
            ).fetchall()
        ]
    if "centroids" in views:
        # each cluster's last published shape of each day (the clustering job republishes them as it learns)
        rows = connection.execute(
            "SELECT cluster, _day, arg_max(profile_norm, _kafka_ms) FROM centroids GROUP BY cluster, _day "
            "ORDER BY cluster, _day"
        ).fetchall()
        for cluster, day, shape in rows:
            view["shapes"].setdefault(int(cluster), []).append((str(day), list(shape or [])))
    connection.close()
    return view


def render_history(view: dict, *, timezone: str, refresh_s: int, controls: str = "") -> str:
    clock = fmt.LocalTime(timezone)
    body = (
        '<p><a href="/operator">Back to the operator view</a></p><div class="grid">'
        + _peaks_card(view, clock)
        + _alerts_card(view)
        + _shapes_card(view)
        + "</div>"
    )
    kept = ", ".join(view.get("views") or []) or "nothing yet"
    return page(
        "History - gridflow",
        "History",
        f"From the Parquet history: {kept}",
        body,
        refresh_s=refresh_s,
        controls=controls,
    )


def _peaks_card(view, clock) -> str:
    peaks = view.get("peaks") or []
    if not peaks:
        return (
            '<section class="card wide"><h2>Feeder peaks per day</h2><p class="muted">No features kept yet.</p>'
            "</section>"
        )
    capacity = view.get("capacity_w") or float("inf")
    rows = "".join(
        f"<tr><td>{escape(day)}</td><td>{escape(feeder)}</td><td class='num'>{fmt.power(w)}</td>"
        f"<td>{escape(clock.clock(at))}</td><td>{'over capacity' if w > capacity else ''}</td></tr>"
        for day, feeder, w, at in reversed(peaks)
    )
    over = sum(w > capacity for _, _, w, _ in peaks)
    return (
        '<section class="card wide"><h2>Feeder peaks per day</h2><p class="muted">Highest minute of the summed '
        f"load of each feeder's household meters, per local day; capacity {fmt.power(capacity)} "
        f"(balancing.feeder_capacity_kw): {over} feeder day(s) above it.</p>"
        '<div class="tablewrap"><table><tr><th>Day</th><th>Feeder</th><th class="num">Peak</th><th>At</th><th></th>'
        f"</tr>{rows}</table></div></section>"
    )


def _alerts_card(view) -> str:
    alerts = view.get("alerts") or []
    if not alerts:
        return '<section class="card wide"><h2>Alerts per week</h2><p class="muted">No alerts kept yet.</p></section>'
    kinds = sorted({kind for _, kind, _ in alerts})
    weeks = sorted({week for week, _, _ in alerts}, reverse=True)
    counts = {(week, kind): n for week, kind, n in alerts}
    head = "".join(f'<th class="num">{escape(k)}</th>' for k in kinds)
    rows = "".join(
        f"<tr><td>{escape(w)}</td>" + "".join(f"<td class='num'>{counts.get((w, k), 0)}</td>" for k in kinds) + "</tr>"
        for w in weeks
    )
    return (
        '<section class="card wide"><h2>Alerts per week</h2><div class="tablewrap"><table>'
        f"<tr><th>Week</th>{head}</tr>{rows}</table></div></section>"
    )


def _shapes_card(view) -> str:
    shapes = view.get("shapes") or {}
    if not shapes:
        return (
            '<section class="card wide"><h2>Cluster shapes over time</h2>'
            '<p class="muted">No cluster centroids kept yet.</p></section>'
        )
    figures = []
    for cluster, days in sorted(shapes.items()):
        recent = [(day, shape) for day, shape in days if shape][-SHAPE_DAYS:]
        if not recent:
            continue
        colours = SHAPE_COLOURS[-len(recent) :]
        series = [Series(shape, "line", colour, day) for (day, shape), colour in zip(recent, colours)]
        n = len(recent[-1][1])
        svg = chart(
            n,
            series,
            hour_ticks(n, 0, every_h=12),
            lambda v: f"{v:.1f}×",
            title=f"Cluster {cluster}",
            width=280,
            height=130,
        )
        figures.append(f"<figure>{svg}<figcaption>Cluster {cluster}</figcaption>{legend(series)}</figure>")
    return (
        '<section class="card wide"><h2>Cluster shapes over time</h2><p class="muted">Each cluster\'s typical '
        f"daily shape at the end of each of its last {SHAPE_DAYS} days (darker: more recent).</p>"
        f'<div class="clusters">{"".join(figures)}</div></section>'
    )
