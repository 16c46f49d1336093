"""Numbers as people read them: units, currency symbols and local clock times.

>>> power(850), power(1234.5), energy(3.456), money(0.4213, "EUR"), money(-1.5, "CHF")
('850 W', '1.23 kW', '3.46 kWh', '€0.42', '-1.50 CHF')
>>> price(0.2712, "EUR"), minutes(135), percent(12.34)
('€0.271/kWh', '2 h 15 min', '12%')
>>> LocalTime("Europe/Paris").clock(1_700_000_000_000)
'23:13'
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "INR": "₹"}
MISSING = "–"


def _ok(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def power(watts) -> str:
    if not _ok(watts):
        return MISSING
    return f"{watts / 1000:.2f} kW" if abs(watts) >= 1000 else f"{watts:.0f} W"


def energy(kwh) -> str:
    if not _ok(kwh):
        return MISSING
    return f"{kwh:.2f} kWh" if abs(kwh) < 100 else f"{kwh:,.0f} kWh"


def money(amount, currency: str | None) -> str:
    if not _ok(amount):
        return MISSING
    code = str(currency or "").upper()
    sign = "-" if amount < 0 else ""
    if code in SYMBOLS:
        return f"{sign}{SYMBOLS[code]}{abs(amount):,.2f}"
    return f"{sign}{abs(amount):,.2f} {code}".rstrip()


def price(per_kwh, currency: str | None) -> str:
    if not _ok(per_kwh):
        return MISSING
    code = str(currency or "").upper()
    text = f"{SYMBOLS[code]}{per_kwh:.3f}" if code in SYMBOLS else f"{per_kwh:.3f} {code}".rstrip()
    return f"{text}/kWh"


def percent(value) -> str:
    return f"{value:.0f}%" if _ok(value) else MISSING


def minutes(total) -> str:
    if not _ok(total):
        return MISSING
    total = int(round(abs(total)))
    hours, rest = divmod(total, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"


class LocalTime:
    """Epoch milliseconds as local clock times of one IANA zone."""

    def __init__(self, zone: str):
        self.zone = ZoneInfo(zone)

    def moment(self, ts_ms) -> datetime | None:
        return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(self.zone) if _ok(ts_ms) else None

    def clock(self, ts_ms) -> str:
        moment = self.moment(ts_ms)
        return moment.strftime("%H:%M") if moment else MISSING

    def day_clock(self, ts_ms) -> str:
        moment = self.moment(ts_ms)
        return moment.strftime("%a %d %b, %H:%M") if moment else MISSING

    def hour(self, ts_ms) -> int:
        moment = self.moment(ts_ms)
        return moment.hour if moment else 0
