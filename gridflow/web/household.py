"""The household page: today's load against its cluster's typical shape, the day-ahead plan on the price
curve, what to do (and what it saves) and alerts. Input is :meth:`PageStore.household`'s snapshot."""

from __future__ import annotations

import math
from html import escape

from gridflow.web import fmt
from gridflow.web.charts import Series, chart, hour_ticks, legend, wide_chart
from gridflow.web.layout import ACCENT, BEFORE, PRICE, TYPICAL, page, stat


def render_household(view: dict, *, timezone: str, currency: str, refresh_s: int, controls: str = "") -> str:
    """The household page; ``controls`` is the session's trusted header HTML (the sign-out form)."""
    clock = fmt.LocalTime(timezone)
    schedule = view.get("schedule") or {}
    currency = schedule.get("currency") or currency
    today = view.get("today") or {}
    body = (
        _stats(view, today, schedule, clock, currency)
        + '<div class="grid">'
        + _actions(view, schedule, clock, currency)
        + _today_card(view, today)
        + _plan_card(schedule, clock, currency)
        + _home_card(schedule, clock)
        + _alerts_card(view.get("alerts") or [], clock)
        + "</div>"
    )
    updated = (
        f"Data up to {clock.day_clock(today['latest_ms'])}" if today.get("latest_ms") else "Waiting for meter data"
    )
    return page(
        f"Household {view['household_id']} - gridflow",
        f"Your home · {view['household_id']}",
        updated,
        body,
        refresh_s=refresh_s,
        controls=controls,
    )


def _stats(view, today, schedule, clock, currency) -> str:
    cards = [
        stat(
            "Using right now",
            fmt.power(today.get("latest_w")),
            f"at {clock.clock(today['latest_ms'])}" if today.get("latest_ms") else "",
        ),
        stat("Used today so far", fmt.energy(today.get("energy_kwh")), today.get("day") or ""),
        stat("Highest load today", fmt.power(today.get("peak_w"))),
    ]
    if schedule:
        cards.append(
            stat(
                "Plan saves",
                fmt.money(schedule.get("savings"), currency),
                f"{fmt.percent(schedule.get('savings_percent'))} of the day's cost",
                good=True,
            )
        )
    else:
        cards.append(stat("Plan saves", fmt.MISSING, "no plan yet"))
    return f'<section class="stats">{"".join(cards)}</section>'


def _actions(view, schedule, clock, currency) -> str:
    items = []
    for rec in view.get("recommendations") or []:
        saving = rec.get("saving_per_day")
        badge = (
            f'<br><span class="save">saves about {escape(fmt.money(saving, rec.get("currency") or currency))}'
            f" a day</span>"
            if isinstance(saving, (int, float)) and saving > 0
            else ""
        )
        when = ""
        if rec.get("from_ts_ms") and rec.get("to_ts_ms"):
            when = f' <span class="muted">({clock.clock(rec["from_ts_ms"])}–{clock.clock(rec["to_ts_ms"])})</span>'
        items.append(f"<li>{escape(rec['text'])}{when}{badge}</li>")
    if not items:  # no recommendation records yet: say what the plan moves
        for row in schedule.get("appliances") or []:
            shift = row.get("shift_minutes") if isinstance(row, dict) else None
            if not isinstance(shift, (int, float)) or shift == 0:
                continue
            name = str(row.get("name", "appliance")).replace("_", " ")
            direction = "later" if shift > 0 else "earlier"
            items.append(
                f"<li>Start the <strong>{escape(name)}</strong> at {clock.clock(row.get('start_ts_ms'))} "
                f"instead of {clock.clock(row.get('usual_start_ts_ms'))} ({fmt.minutes(shift)} {direction}).</li>"
            )
        if items and isinstance(schedule.get("savings"), (int, float)) and schedule["savings"] > 0:
            items.append(
                f'<li>Following the plan <span class="save">saves '
                f"{escape(fmt.money(schedule['savings'], currency))} tomorrow</span></li>"
            )
    content = (
        f'<ol class="actions">{"".join(items)}</ol>'
        if items
        else '<p class="muted">Nothing to change right now: your usage already fits the prices.</p>'
    )
    return f'<section class="card"><h2>What to do</h2>{content}</section>'


def _today_card(view, today) -> str:
    cluster = view.get("cluster") or {}
    load = today.get("load_w") or []
    n = len(load) or 24
    per = "hour" if n == 24 else fmt.minutes(1440 / n)
    series = [Series(load, "bars", ACCENT, f"Your use today (average per {per})")]
    norm = cluster.get("profile_norm")
    scale = (view.get("profile") or {}).get("mean_w")
    if not isinstance(scale, (int, float)) or scale <= 0:
        known = [v for v in load if isinstance(v, (int, float))]
        scale = sum(known) / len(known) if known else None
    if norm and scale and len(norm) == n:
        typical = [v * scale if isinstance(v, (int, float)) else None for v in norm]
        series.append(Series(typical, "line", TYPICAL, "Typical for homes like yours", dashed=True))
    if cluster:
        size = cluster.get("size") or cluster.get("members_here")
        group = f"Your home is in usage group {cluster['cluster']}" + (
            f", with {size} homes of a similar daily pattern." if size else "."
        )
    else:
        group = "Your usage group is not known yet (it needs a full day of readings)."
    if not today:
        content = '<p class="muted">No readings today yet.</p>'
    else:
        content = chart(
            n, series, hour_ticks(n, 0), fmt.power, title="Your load today against your group's typical shape"
        ) + legend(series)
    return f'<section class="card"><h2>Today vs homes like yours</h2>{content}<p>{escape(group)}</p></section>'


def _plan_card(schedule, clock, currency) -> str:
    if not schedule:
        return (
            '<section class="card"><h2>Day-ahead plan and prices</h2><p class="muted">No plan yet: it appears '
            "once the price forecast and your appliances are known.</p></section>"
        )
    prices = _numbers(schedule.get("price_per_kwh"))
    n = _whole(schedule.get("slots"), len(prices) or 24)
    hours = n * _whole(schedule.get("slot_minutes"), 60) / 60
    series = [
        Series(_numbers(schedule.get("load_before_w")), "outline", BEFORE, "Your usual timing"),
        Series(_numbers(schedule.get("load_after_w")), "bars", ACCENT, "Planned appliance use"),
        Series(prices, "step", PRICE, "Price", axis="right"),
    ]
    ticks = hour_ticks(n, clock.hour(schedule.get("start_ts_ms")), hours=hours)
    svg = wide_chart(
        n,
        series,
        ticks,
        fmt.power,
        lambda p: fmt.price(p, currency),
        title="Planned appliance load on the day-ahead price curve",
    )
    rows = "".join(
        f"<tr><td>{escape(str(r.get('name', '')).replace('_', ' '))}</td>"
        f"<td class=num>{clock.clock(r.get('start_ts_ms'))}–{clock.clock(r.get('end_ts_ms'))}</td>"
        f"<td class=num>{clock.clock(r.get('usual_start_ts_ms'))}</td><td class=num>{fmt.power(r.get('power_w'))}</td></tr>"
        for r in schedule.get("appliances") or []
        if isinstance(r, dict)
    )
    table = (
        f'<div class="tablewrap"><table><thead><tr><th>Appliance</th><th class=num>Planned</th>'
        f"<th class=num>Usually</th><th class=num>Power</th></tr></thead><tbody>{rows}</tbody></table></div>"
        if rows
        else ""
    )
    cheapest = min((p for p in prices if p is not None), default=None)
    summary = escape(
        f"Planned cost {fmt.money(schedule.get('expected_cost'), currency)} instead of "
        f"{fmt.money(schedule.get('unscheduled_cost'), currency)}: you save "
    )
    summary += f"<strong>{escape(fmt.money(schedule.get('savings'), currency))}</strong> " + escape(
        f"({fmt.percent(schedule.get('savings_percent'))}). Cheapest price {fmt.price(cheapest, currency)}."
    )
    start = clock.day_clock(schedule.get("start_ts_ms"))
    return (
        f'<section class="card wide"><h2>Day-ahead plan and prices</h2><p class="muted">From {start}, '
        f"{fmt.minutes(hours * 60)}</p>{svg}{legend(series)}<p>{summary}</p>{table}</section>"
    )


def _home_card(schedule, clock) -> str:
    """The battery, PV and EV plan of a home that sent them (the schedule's ``home`` block), else nothing."""
    home = schedule.get("home") if isinstance(schedule, dict) else None
    if not isinstance(home, dict):
        return ""
    pv, battery, ev = (_numbers(home.get(k)) for k in ("pv_w", "battery_setpoint_w", "ev_setpoint_w"))
    soc = [None if v is None else 100.0 * v for v in _numbers(home.get("battery_soc"))]
    n = _whole(schedule.get("slots"), len(battery) or 24)
    minutes = _whole(schedule.get("slot_minutes"), 60)
    series = [
        Series(battery, "bars", ACCENT, "Battery (+ charging, - discharging)"),
        Series(ev, "outline", BEFORE, "EV charging"),
        Series(pv, "line", TYPICAL, "Solar used"),
    ]
    if any(v is not None for v in soc):
        series.append(Series(soc[:n], "line", PRICE, "Battery charge (%)", axis="right", dashed=True))
    ticks = hour_ticks(n, clock.hour(schedule.get("start_ts_ms")), hours=n * minutes / 60)
    svg = wide_chart(n, series, ticks, fmt.power, lambda v: f"{v:.0f} %", title="Battery, solar and EV plan")
    h = minutes / 60
    facts = []
    if any(v is not None for v in soc):
        known = [v for v in soc if v is not None]
        charged = sum(v for v in battery if v is not None and v > 0) * h / 1000
        used = -sum(v for v in battery if v is not None and v < 0) * h / 1000
        facts.append(
            f"Battery: {known[0]:.0f} % now, {known[-1]:.0f} % at the end; charges {charged:.1f} kWh "
            f"and gives back {used:.1f} kWh."
        )
    gained = home.get("ev_energy_kwh")
    if isinstance(gained, (int, float)) and not isinstance(gained, bool) and gained > 0:
        on = [i for i, v in enumerate(ev) if v is not None and v > 0]
        start = schedule.get("start_ts_ms")
        if on and isinstance(start, int):
            first, last = start + on[0] * minutes * 60_000, start + (on[-1] + 1) * minutes * 60_000
            facts.append(f"EV: gains {gained:.1f} kWh, charging between {clock.clock(first)} and {clock.clock(last)}.")
    share = home.get("self_consumption")
    if isinstance(share, (int, float)) and not isinstance(share, bool):
        facts.append(f"Solar used at home: {fmt.percent(100.0 * share)} of what the panels make.")
    text = "".join(f"<p>{escape(f)}</p>" for f in facts)
    return f'<section class="card wide"><h2>Battery, solar and EV</h2>{svg}{legend(series)}{text}</section>'


def _numbers(value) -> list:
    """A list field of a record as numbers (anything else becomes a gap)."""
    if not isinstance(value, list):
        return []
    return [
        float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        for v in value
    ]


def _whole(value, default: int) -> int:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 1 <= value <= 10_000
    )
    return int(value) if ok else default


def _alerts_card(alerts: list, clock) -> str:
    if not alerts:
        return '<section class="card"><h2>Alerts</h2><p class="muted">No alerts. All looks normal.</p></section>'
    return f'<section class="card"><h2>Alerts</h2>{"".join(alert_html(a, clock) for a in alerts)}</section>'


def alert_html(alert: dict, clock, *, household: bool = False) -> str:
    severity = str(alert.get("severity") or "info").lower()
    kind = str(alert.get("type") or "alert").replace("_", " ")
    message, action = alert.get("message"), alert.get("suggested_action")
    text = "".join(f"<p>{escape(str(t))}</p>" for t in (message, action and f"What to do: {action}") if t)
    raw_evidence = alert.get("evidence")
    evidence = raw_evidence if isinstance(raw_evidence, dict) else {}
    facts = ", ".join(
        f"{escape(_label(k))}: {escape(_fact(k, v))}"
        for k, v in list(evidence.items())[:4]
        if not str(k).endswith("_ms")
    )
    who = f"{escape(str(alert.get('household_id')))} · " if household else ""
    return (
        f'<div class="alert {escape(severity)}"><div class="meta">{who}{escape(kind)} · {escape(severity)} · '
        f"{clock.day_clock(alert.get('ts_ms'))}</div>{text}"
        + (f'<div class="meta">{facts}</div>' if facts else "")
        + "</div>"
    )


def _fact(key, value) -> str:
    """An evidence value with the unit its key names (``*_w``, ``*_kwh``, ``*_ms``)."""
    key = str(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key.endswith("_w"):
            return fmt.power(value)
        if key.endswith("_kwh"):
            return fmt.energy(value)
        return f"{value:,.2f}" if isinstance(value, float) and not value.is_integer() else f"{value:,.0f}"
    return str(value)[:80]


def _label(key) -> str:
    words = str(key).removesuffix("_w").removesuffix("_kwh").replace("_", " ")
    return words[:1].upper() + words[1:]
