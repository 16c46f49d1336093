"""The TLS context every gridflow MQTT client uses (bridge, downlink, simulator, demo meters).

With ``mqtt.tls`` the broker's certificate is checked against ``mqtt.ca_file`` (empty: the system's
trusted CAs) and its name against ``mqtt.host``; TLS 1.2 is the oldest version accepted.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gridflow.settings import MqttSettings


def client_context(mqtt: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context for connecting to ``mqtt.host``, or None for plain TCP (``mqtt.tls`` false)."""
    if not mqtt.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mqtt.ca_file:
        path = Path(mqtt.ca_file).expanduser()
        if not path.is_file():
            raise ValueError(f"mqtt.ca_file: {path} does not exist (the CA certificate that signed the broker's)")
        context.load_verify_locations(cafile=str(path))
    return context
