"""Board entry point of the smart meter (MicroPython on ESP32).

Copy ``meter.py``, ``drivers.py``, ``main.py`` and a ``config.json`` (see ``config.example.json``)
to the board's root folder, with ``umqtt.simple`` installed (``mpremote mip install umqtt.simple``).
MicroPython runs ``main.py`` after boot; :func:`main` joins Wi-Fi, sets the clock by NTP, builds the
metering-chip driver and the :class:`Meter`, and steps it forever. A fatal error resets the board
after a pause; Ctrl-C in the REPL stops it.

Thin on purpose: the logic is in ``meter.py`` and ``drivers.py``. The tests run :func:`run` under
CPython with fakes of ``machine``, ``network``, ``ntptime`` and ``umqtt.simple``, and unmodified under
MicroPython's unix port with the real ``umqtt.simple`` against the embedded mosquitto (TLS, its own
account), with shims of ``machine``, ``network`` and ``ntptime`` only.
"""

import gc
import json
import os
import sys
import time

import machine
import network
import ntptime
from umqtt.simple import MQTTClient

try:
    from .drivers import CTClamp, PZEM004T
    from .meter import Meter
except ImportError:  # on the board the firmware files sit flat in the root folder, not in a package
    from drivers import CTClamp, PZEM004T
    from meter import Meter

CONFIG_PATH = "config.json"
_EPOCH_2000_MS = 946684800000  # 2000-01-01T00:00:00Z in Unix epoch ms

# MicroPython's millisecond/microsecond sleeps, with CPython stand-ins.
sleep_ms = getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000.0))
sleep_us = getattr(time, "sleep_us", None) or (lambda us: time.sleep(us / 1000000.0))


class Clock:
    """Wall-clock time as Unix epoch milliseconds, whatever epoch the port's ``time`` counts from.

    ESP32 MicroPython counts from 2000-01-01 (``time.gmtime(0)[0] == 2000``); CPython and some
    ports from 1970. ``time.time_ns()`` is used when available: ``time.time()`` is whole seconds there.
    """

    def __init__(self, time_module=None):
        self._time = time_module or time
        self._offset_ms = _EPOCH_2000_MS if self._time.gmtime(0)[0] == 2000 else 0
        self._time_ns = getattr(self._time, "time_ns", None)

    def now_ms(self):
        if self._time_ns is not None:
            return self._time_ns() // 1000000 + self._offset_ms
        return int(self._time.time() * 1000) + self._offset_ms


def load_config(path=CONFIG_PATH):
    """The board's configuration (a JSON object, see ``config.example.json``)."""
    with open(path) as f:
        return json.load(f)


def password_saver(config, path=CONFIG_PATH):
    """The meter's ``save_password``: keeps a pending or a confirmed new MQTT password in ``config.json``
    (written aside and renamed into place, so a reset mid-write leaves the old file)."""

    def save(password, pending):
        mqtt = config["mqtt"]
        if pending:
            mqtt["next_password"] = password
        else:
            mqtt["password"] = password
            mqtt.pop("next_password", None)
        draft = path + ".new"
        with open(draft, "w") as f:
            json.dump(config, f)
        os.rename(draft, path)

    return save


def read_ca(mqtt):
    """The CA certificate the broker's must be signed by, DER-encoded (``mqtt["ca_file"]``, default
    ``ca.der``; MicroPython's mbedTLS reads DER only)."""
    with open(mqtt.get("ca_file", "ca.der"), "rb") as f:
        return f.read()


def tls_context(mqtt):
    """An SSL context that checks the broker's certificate and name, or None without ``mqtt["tls"]``."""
    if not mqtt.get("tls"):
        return None
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=read_ca(mqtt))
    return context


def connect_wifi(wifi, timeout_ms=20000):
    """Join the Wi-Fi network ``wifi`` (``ssid``, ``password``) as a station; returns the WLAN."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(wifi["ssid"], wifi.get("password", ""))
        waited = 0
        while not wlan.isconnected():
            if waited >= timeout_ms:
                raise OSError("Wi-Fi: could not join %r within %d ms" % (wifi["ssid"], timeout_ms))
            sleep_ms(100)
            waited += 100
    return wlan


def sync_time(host=None, attempts=5):
    """Set the board's clock from NTP; returns whether it worked within ``attempts`` tries."""
    if host:
        ntptime.host = host
    for attempt in range(attempts):
        try:
            ntptime.settime()
            return True
        except (OSError, OverflowError):  # timeout, DNS failure, garbage reply
            if attempt + 1 < attempts:
                sleep_ms(1000)
    return False


def build_driver(config):
    """The metering-chip driver named by ``config["driver"]``: ``"pzem"`` or ``"ct"``."""
    kind = config.get("driver", "pzem")
    if kind == "pzem":
        pzem = config.get("pzem", {})
        uart = machine.UART(
            pzem.get("uart", 2),
            baudrate=9600,
            tx=pzem.get("tx_pin", 17),
            rx=pzem.get("rx_pin", 16),
            timeout=pzem.get("timeout_ms", 100),
        )
        return PZEM004T(uart, address=pzem.get("address", 0xF8))
    if kind == "ct":
        ct = config.get("ct", {})
        adc = machine.ADC(machine.Pin(ct.get("adc_pin", 34)))
        adc.atten(machine.ADC.ATTN_11DB)  # the widest input range
        period_us = ct.get("sample_period_us", 1000)
        delay = (lambda: sleep_us(period_us)) if period_us else None
        return CTClamp(
            adc,
            samples=ct.get("samples", 200),
            burden_ohms=ct.get("burden_ohms", 33.0),
            turns=ct.get("turns", 2000),
            adc_vref=ct.get("adc_vref", 3.3),
            adc_max=ct.get("adc_max", 4095),
            nominal_voltage_v=ct.get("nominal_voltage_v", 230.0),
            power_factor=ct.get("power_factor", 1.0),
            sample_delay=delay,
        )
    raise ValueError("config: driver must be 'pzem' or 'ct', got %r" % (kind,))


def build_mqtt(config):
    """A umqtt.simple client for the broker in ``config["mqtt"]``; the meter id is the client id."""
    mqtt = config["mqtt"]
    context = tls_context(mqtt)
    options = {"ssl": context} if context is not None else {}  # umqtt.simple >= 1.4 takes an SSLContext
    client = MQTTClient(
        config["meter_id"].encode(),
        mqtt["host"],
        port=mqtt.get("port", 8883 if context is not None else 1883),
        user=mqtt.get("user") or None,
        password=mqtt.get("password") or None,
        keepalive=mqtt.get("keepalive", 0),
        **options,
    )
    if context is not None and hasattr(client, "ssl_params"):
        # umqtt.simple before 1.4: ``ssl`` is a flag and ``ussl.wrap_socket`` gets the checks as parameters
        # (given none, it would check nothing); MicroPython 1.21+ names that module ``ssl``.
        import ssl

        sys.modules.setdefault("ussl", ssl)
        client.ssl = True
        client.ssl_params = {"server_hostname": mqtt["host"], "cert_reqs": ssl.CERT_REQUIRED, "cadata": read_ca(mqtt)}
    return client


def run(config_path=CONFIG_PATH, max_steps=None, config=None, clock=None, on_command=None):
    """Set the board up and step the meter; forever, or ``max_steps`` times (tests).

    Returns
    -------
    Meter
        The meter, after ``max_steps`` steps.
    """
    if config is None:
        config = load_config(config_path)
    wlan = connect_wifi(config["wifi"])
    ntp_host = config.get("ntp_host")
    if not sync_time(ntp_host):
        raise OSError("NTP: clock not set, readings would carry wrong timestamps")
    clock = clock or Clock()
    meter = Meter(
        config,
        build_driver(config),
        build_mqtt(config),
        clock=clock,
        on_command=on_command,
        save_password=password_saver(config, config_path),
        next_password=config["mqtt"].get("next_password"),
    )

    watchdog_ms = config.get("watchdog_ms", 0)  # resets the board if a step hangs (a lost PUBACK)
    wdt = machine.WDT(timeout=watchdog_ms) if watchdog_ms else None
    loop_sleep_ms = config.get("loop_sleep_ms", 50)
    resync_ms = config.get("ntp_resync_s", 3600) * 1000
    last_sync_ms = last_wifi_ms = clock.now_ms()

    steps = 0
    while max_steps is None or steps < max_steps:
        now_ms = clock.now_ms()
        meter.step(now_ms)
        if now_ms - last_sync_ms >= resync_ms:  # keep the clock from drifting; failures are retried later
            sync_time(ntp_host, attempts=1)
            last_sync_ms = now_ms
        if not wlan.isconnected() and now_ms - last_wifi_ms >= 30000:
            last_wifi_ms = now_ms
            try:
                wlan.connect(config["wifi"]["ssid"], config["wifi"].get("password", ""))
            except OSError:
                pass  # the meter keeps buffering; try again later
        if wdt is not None:
            wdt.feed()
        steps += 1
        if steps % 20 == 0:
            gc.collect()  # small, regular collections keep the heap from fragmenting
        sleep_ms(loop_sleep_ms)
    return meter


def main():
    """Run the meter; on a fatal error, print it and reset the board after 10 s."""
    try:
        run()
    except Exception as exc:
        print("meter: fatal error %r; resetting in 10 s" % (exc,))
        sleep_ms(10000)
        machine.reset()


if __name__ == "__main__":
    main()
