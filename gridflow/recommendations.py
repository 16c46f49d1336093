"""Recommendations for one household from its schedule, load profile and alerts (no Flink, no I/O).

Three kinds, each with an estimated saving per day in the tariff's currency:

* ``shift``: an appliance the schedule moves ("Run the dishwasher at 01:00 instead of 19:00: saves 0.42 EUR
  a day"); the saving is the appliance's energy priced at its usual slots minus at its scheduled slots;
* ``off_peak``: a household that uses more than ``off_peak_share`` of its energy in the peak hours is told
  how much moving one kWh a day out of them saves under the configured time-of-use tariff;
* ``alert``: an anomaly alert turned into a sentence with its suggested action (saving 0).

Times are local (``preprocess.timezone``).

>>> schedule = {"household_id": "h-1", "start_ts_ms": 0, "slot_minutes": 60, "currency": "EUR",
...             "price_per_kwh": [0.1] * 12 + [0.4] * 12,
...             "appliances": [{"name": "dishwasher", "power_w": 1800.0, "start_ts_ms": 3_600_000,
...                             "end_ts_ms": 7_200_000, "usual_start_ts_ms": 68_400_000, "shift_minutes": -1080}]}
>>> [r["text"] for r in from_schedule(schedule, "UTC", now_ms=5)]
['Run the dishwasher at 01:00 instead of 19:00: saves 0.54 EUR a day.']
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from gridflow.contracts import SCHEMA_VERSION


def _clock(ts_ms: int, zone: str) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(ZoneInfo(zone)).strftime("%H:%M")


def _record(household_id: str, kind: str, text: str, saving: float, currency: str, now_ms: int, **extra) -> dict:
    return {
        "v": SCHEMA_VERSION,
        "household_id": household_id,
        "kind": kind,
        "text": text,
        "saving_per_day": round(saving, 4),
        "currency": currency,
        "created_ms": now_ms,
        "appliance": extra.pop("appliance", None),
        "from_ts_ms": extra.pop("from_ts_ms", None),
        "to_ts_ms": extra.pop("to_ts_ms", None),
        **extra,
    }


def from_schedule(schedule: dict, zone: str, now_ms: int, min_saving: float = 0.005) -> list[dict]:
    """One ``shift`` recommendation per appliance the schedule moves with a saving of at least ``min_saving``."""
    prices = schedule["price_per_kwh"]
    slot_ms = schedule["slot_minutes"] * 60_000
    start, currency = schedule["start_ts_ms"], schedule.get("currency", "EUR")
    out = []
    for a in schedule.get("appliances", []):
        if not a.get("shift_minutes"):
            continue
        n = max(1, (a["end_ts_ms"] - a["start_ts_ms"]) // slot_ms)
        usual = (a["usual_start_ts_ms"] - start) // slot_ms
        planned = (a["start_ts_ms"] - start) // slot_ms
        if usual < 0 or usual + n > len(prices):
            continue
        kwh_per_slot = a["power_w"] / 1000.0 * slot_ms / 3_600_000
        saving = kwh_per_slot * (sum(prices[usual : usual + n]) - sum(prices[planned : planned + n]))
        if saving < min_saving:
            continue
        label = (
            f"{a['power_w']:.0f} W appliance"
            if a["name"].startswith("load_")  # learned by NILM, unnamed
            else a["name"].replace("_", " ")
        )
        text = (
            f"Run the {label} at {_clock(a['start_ts_ms'], zone)} instead of "
            f"{_clock(a['usual_start_ts_ms'], zone)}: saves {saving:.2f} {currency} a day."
        )
        out.append(
            _record(
                schedule["household_id"],
                "shift",
                text,
                saving,
                currency,
                now_ms,
                appliance=a["name"],
                from_ts_ms=a["usual_start_ts_ms"],
                to_ts_ms=a["start_ts_ms"],
            )
        )
    return out


def _peak_premium(tariff, peak_hours: list[int]) -> float:
    """What a kWh costs in the peak hours (their mean time-of-use price) above the cheapest hour; 0 without
    peak hours."""
    if not peak_hours:
        return 0.0
    hourly = [0.0] * 24
    for period in tariff.tou:
        for hour in range(period.start_hour, period.end_hour):
            hourly[hour] = period.price_per_kwh
    return sum(hourly[h] for h in peak_hours) / len(peak_hours) - min(hourly)


def from_profile(profile: dict, tariff, peak_hours: list[int], now_ms: int, off_peak_share: float = 0.3) -> list[dict]:
    """An ``off_peak`` recommendation when the day's peak-hour share of energy exceeds ``off_peak_share``."""
    share = profile.get("peak_share")
    if share is None or share <= off_peak_share or not profile.get("energy_kwh"):
        return []
    saving = _peak_premium(tariff, peak_hours)
    if saving <= 0:
        return []
    first, last = min(peak_hours), max(peak_hours) + 1
    text = (
        f"{share:.0%} of your electricity is used between {first:02d}:00 and {last:02d}:00, when it costs most. "
        f"Each kWh you move to the cheapest hours saves {saving:.2f} {tariff.currency}."
    )
    return [_record(profile["household_id"], "off_peak", text, saving, tariff.currency, now_ms, peak_share=share)]


def from_load_forecast(forecast: dict, tariff, peak_hours: list[int], zone: str, now_ms: int) -> list[dict]:
    """A ``forecast`` recommendation: tomorrow's expected energy and peak, the share of it in the peak hours
    and what each kWh moved out of them saves under the time-of-use tariff (none for an empty forecast)."""
    values = [v for v in forecast["load_w"] if v is not None]
    if not values or forecast["energy_kwh"] <= 0:
        return []
    slot_minutes, start = forecast["slot_minutes"], forecast["start_ts_ms"]
    in_peak = 0.0
    for i, w in enumerate(forecast["load_w"]):
        hour = int(_clock(start + i * slot_minutes * 60_000, zone)[:2])
        if w is not None and w > 0 and hour in peak_hours:
            in_peak += w * slot_minutes / 60_000
    share = in_peak / forecast["energy_kwh"]
    saving = _peak_premium(tariff, peak_hours)
    first, last = (min(peak_hours), max(peak_hours) + 1) if peak_hours else (0, 0)
    energy, peak_kw, peak_at = forecast["energy_kwh"], forecast["peak_w"] / 1000, _clock(forecast["peak_ts_ms"], zone)
    text = (
        f"Tomorrow your home is expected to use {energy:.1f} kWh, at most {peak_kw:.1f} kW around {peak_at}; "
        f"{share:.0%} of it between {first:02d}:00 and {last:02d}:00"
    )
    text += f": each kWh moved to the cheapest hours saves {saving:.2f} {tariff.currency}." if saving > 0 else "."
    return [
        _record(
            forecast["household_id"],
            "forecast",
            text,
            0.0,
            tariff.currency,
            now_ms,
            from_ts_ms=start,
            energy_kwh=forecast["energy_kwh"],
            peak_w=forecast["peak_w"],
            peak_share=round(share, 4),
        )
    ]


def from_alert(alert: dict, currency: str, now_ms: int) -> list[dict]:
    """An ``alert`` recommendation: what was seen and what to do."""
    if alert["type"] == "back_online":
        minutes = alert.get("evidence", {}).get("silent_minutes")
        text = f"Your meter is sending readings again{f' after {minutes} minutes without any' if minutes else ''}."
    else:
        text = f"Alert ({alert['severity']}): {alert['type'].replace('_', ' ')} detected. {alert['action']}"
    return [
        _record(
            alert["household_id"],
            "alert",
            text,
            0.0,
            currency,
            now_ms,
            alert_type=alert["type"],
            from_ts_ms=alert["ts_ms"],
        )
    ]


def from_grid_request(request: dict, zone: str, currency: str, now_ms: int) -> list[dict]:
    """A ``grid_request``: the feeder would be overloaded; the household is asked to move one run within
    its comfort window (no saving for the household; the text says why)."""
    text = (
        f"Your local grid is busy then: please run the {request['appliance'].replace('_', ' ')} at "
        f"{_clock(request['to_ts_ms'], zone)} instead of {_clock(request['from_ts_ms'], zone)}."
    )
    return [
        _record(
            request["household_id"],
            "grid_request",
            text,
            0.0,
            currency,
            now_ms,
            appliance=request["appliance"],
            from_ts_ms=request["from_ts_ms"],
            to_ts_ms=request["to_ts_ms"],
            feeder_peak_after_w=request["feeder_peak_after_w"],
            capacity_w=request["capacity_w"],
        )
    ]
