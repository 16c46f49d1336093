"""MQTT receive side alone: CPU per QoS 1 message for the clients the bridge could use, no Kafka.

A private mosquitto (anonymous, loopback) holds a persistent session filled with N queued QoS 1 readings by
four paho publishers; each client then drains it and acknowledges every message:

* ``paho``: paho-mqtt's loop with manual acknowledgement (the bridge's ``bridge.mqtt_client=paho``);
* ``gmqtt``: gmqtt with each PUBACK sent from its packet handler at once, one write per message (the
  bridge's path, which also writes the PUBACKs of one Kafka delivery poll together);
* ``gmqtt-async``: gmqtt's own acknowledge-after-an-async-callback path (a task per message).

    python benchmarks/mqtt_receive.py [N] [paho gmqtt gmqtt-async]
"""

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gridflow.stack.processes import free_port

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
PORT = free_port()  # inherited by the forked publishers


def cpu(pid="self"):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def publish(args):
    w, n = args
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{w}", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", PORT)
    c.loop_start()
    last = None
    for m in range(n):
        h = (w * 7919 + m) % 5000
        p = json.dumps(
            {
                "v": 1,
                "household_id": f"h-{h:05d}",
                "meter_id": f"m-{h:05d}",
                "ts_ms": 1768435200000 + m * 1000,
                "power_w": 100.0 + m % 3000,
                "voltage_v": 231.4,
                "current_a": 1.234,
                "energy_kwh": 1532.118,
            }
        ).encode()
        last = c.publish(f"meters/h-{h:05d}/readings", p, qos=1)
    last.wait_for_publish(600)
    c.loop_stop()


def fill(cid):
    # create the session
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=False)
    c.connect("127.0.0.1", PORT)
    c.subscribe("meters/+/readings", qos=1)
    for _ in range(20):
        c.loop(0.05)
    c.disconnect()
    with multiprocessing.Pool(4) as pool:
        pool.map(publish, [(w, N // 4) for w in range(4)])


def drain_paho(cid):
    import paho.mqtt.client as mqtt

    got = [0]
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True
    )
    c.max_inflight_messages_set(1000)

    def on_message(cl, u, m):
        got[0] += 1
        cl.ack(m.mid, m.qos)

    c.on_message = on_message
    c.connect("127.0.0.1", PORT)
    t0, c0 = time.monotonic(), cpu()
    while got[0] < N:
        c.loop(0.01)
    dt, dc = time.monotonic() - t0, cpu() - c0
    c.disconnect()
    return dt, dc


async def timed_drain(client, fin):
    """(wall s, CPU s) from connecting ``client`` until ``fin`` is set."""
    from gmqtt.mqtt.constants import MQTTv311

    t0, c0 = time.monotonic(), cpu()
    await client.connect("127.0.0.1", PORT, version=MQTTv311, keepalive=60)
    await fin.wait()
    dt, dc = time.monotonic() - t0, cpu() - c0
    await client.disconnect()
    return dt, dc


def drain_gmqtt(cid):
    import gmqtt

    got = [0]

    async def main():
        fin = asyncio.Event()
        c = gmqtt.Client(cid, clean_session=False, optimistic_acknowledgement=False)
        handler = c._package_handler

        def on_qos1(mid, packet, print_topic, properties):
            got[0] += 1
            handler._send_puback(mid)
            if got[0] >= N:
                fin.set()

        handler._handle_qos_1_publish_packet = on_qos1
        c.on_message = lambda *a: 0
        return await timed_drain(c, fin)

    return asyncio.run(main())


def drain_gmqtt_async(cid):
    import gmqtt

    got = [0]

    async def main():
        fin = asyncio.Event()
        loop = asyncio.get_running_loop()
        c = gmqtt.Client(cid, clean_session=False, optimistic_acknowledgement=False)

        async def on_message(client, topic, payload, qos, properties):
            got[0] += 1
            f = loop.create_future()
            loop.call_soon(f.set_result, 0)
            r = await f
            if got[0] >= N:
                fin.set()
            return r

        c.on_message = on_message
        return await timed_drain(c, fin)

    return asyncio.run(main())


if __name__ == "__main__":
    d = tempfile.mkdtemp()
    conf = Path(d) / "m.conf"
    conf.write_text(
        f"listener {PORT} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 1000\npersistence false\n"
    )
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        for name in sys.argv[2:] or ["paho", "gmqtt"]:
            cid = f"drain-{name}"
            fill(cid)
            dt, dc = {"paho": drain_paho, "gmqtt": drain_gmqtt, "gmqtt-async": drain_gmqtt_async}[name](cid)
            print(
                f"{name}: {N} msgs in {dt:.2f} s = {N / dt:,.0f}/s, cpu {dc:.2f} s = {dc / N * 1e6:.1f} us/msg",
                flush=True,
            )
    finally:
        broker.terminate()
