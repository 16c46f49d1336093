"""Home Assistant MQTT discovery: a household's Home Assistant shows gridflow's advice as sensors.

The downlink publishes, retained, for each household it has records for and on that household's own
topics (its MQTT account may read ``meters/<household_id>/homeassistant/#`` and nothing of any other
household's):

- discovery configs ``<prefix>/sensor/gridflow_<household>_<entity>/config`` with ``<prefix>`` =
  ``meters/<household_id>/homeassistant`` (set it as the discovery prefix of Home Assistant's MQTT
  integration), one device "gridflow <household>" with four sensors:
  ``next_recommendation`` (the latest advice's text; the record as attributes), ``planned_runs`` (how
  many appliance runs the day-ahead plan moves; the runs as attributes), ``saving_today`` (the plan's
  saving, monetary, in its currency) and ``open_alerts`` (alerts of the last 24 h; the latest as attributes);
- their states on ``<prefix>/gridflow/<entity>/state`` as JSON, after each record.

Payload keys follow Home Assistant's MQTT discovery documentation (``unique_id``, ``state_topic``,
``value_template``, ``json_attributes_topic``, ``device``, ``availability``...).
"""

from __future__ import annotations

import json
from collections import deque

ALERT_WINDOW_MS = 86_400_000
ALERTS_KEPT = 5


def prefix(template: str, household: str) -> str:
    return template.replace("{household_id}", household)


ENTITIES = {
    "next_recommendation": {"name": "Next recommendation", "icon": "mdi:lightbulb-on-outline"},
    "planned_runs": {"name": "Planned appliance runs", "icon": "mdi:calendar-clock", "state_class": "measurement"},
    "saving_today": {"name": "Saving today", "device_class": "monetary", "icon": "mdi:piggy-bank-outline"},
    "open_alerts": {"name": "Open alerts", "icon": "mdi:alert-outline", "state_class": "measurement"},
}


def state_topic(base: str, entity: str) -> str:
    return f"{base}/gridflow/{entity}/state"


def discovery(base: str, household: str, currency: str) -> list[tuple[str, str]]:
    """The retained discovery configs of one household's sensors under ``base``."""
    device = {
        "identifiers": [f"gridflow_{household}"],
        "name": f"gridflow {household}",
        "manufacturer": "gridflow",
        "model": "energy advice",
    }
    out = []
    for entity, extra in ENTITIES.items():
        unique = f"gridflow_{household}_{entity}".replace(".", "_").replace(":", "_")
        config = {
            "name": extra["name"],
            "unique_id": unique,
            "object_id": unique,
            "state_topic": state_topic(base, entity),
            "value_template": "{{ value_json.value }}",
            "json_attributes_topic": state_topic(base, entity),
            "json_attributes_template": "{{ value_json.attributes | tojson }}",
            "availability_topic": f"{base}/gridflow/availability",
            "device": device,
            **{k: v for k, v in extra.items() if k != "name"},
        }
        if entity == "saving_today":
            config["unit_of_measurement"] = currency
        out.append((f"{base}/sensor/{unique}/config", json.dumps(config, sort_keys=True)))
    out.append((f"{base}/gridflow/availability", "online"))
    return out


class HouseholdStates:
    """What the sensors of each household show, from the records the downlink forwards."""

    def __init__(self, discovery_template: str):
        self.template = discovery_template
        self._announced: set[str] = set()
        self._alerts: dict[str, deque] = {}

    def messages(self, kind: str, record: dict) -> list[tuple[str, str]]:
        """Retained MQTT messages (topic, payload) for one schedule or recommendation record."""
        household = record["household_id"]
        base = prefix(self.template, household)
        out: list[tuple[str, str]] = []
        if household not in self._announced:  # the sensors, each with a first state the records then replace
            out += discovery(base, household, record.get("currency") or "EUR")
            out += [
                _state(base, "next_recommendation", "none yet", {}),
                _state(base, "planned_runs", 0, {"runs": []}),
                _state(base, "saving_today", 0.0, {}),
                _state(base, "open_alerts", 0, {"latest": []}),
            ]
            self._announced.add(household)
        if kind == "schedule":
            runs = [
                {"name": r.get("name"), "start_ts_ms": r.get("start_ts_ms"), "power_w": r.get("power_w")}
                for r in record.get("appliances") or []
                if r.get("shift_minutes")
            ]
            out.append(_state(base, "planned_runs", len(runs), {"runs": runs}))
            saving = {"currency": record.get("currency"), "start_ts_ms": record.get("start_ts_ms")}
            out.append(_state(base, "saving_today", round(float(record.get("savings") or 0.0), 2), saving))
            return out
        if record.get("kind") == "alert":
            alerts = self._alerts.setdefault(household, deque(maxlen=100))
            alerts.append(record)
            recent = [a for a in alerts if a["created_ms"] > record["created_ms"] - ALERT_WINDOW_MS]
            latest = [{"text": a["text"], "created_ms": a["created_ms"]} for a in recent[-ALERTS_KEPT:]]
            out.append(_state(base, "open_alerts", len(recent), {"latest": latest}))
        out.append(_state(base, "next_recommendation", record["text"][:255], _attributes(record)))
        return out


def _attributes(record: dict) -> dict:
    keys = ("kind", "appliance", "saving_per_day", "currency", "from_ts_ms", "to_ts_ms", "created_ms", "text")
    return {k: record.get(k) for k in keys}


def _state(base: str, entity: str, value, attributes: dict) -> tuple[str, str]:
    return state_topic(base, entity), json.dumps({"value": value, "attributes": attributes}, sort_keys=True)
