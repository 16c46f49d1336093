"""Meters' own MQTT accounts on the embedded broker: add, list, remove and rotate, while it runs.

A meter logs in with its household id as user name and a password of its own (the ACL then lets it
publish only its own readings and status, and read only its own commands). Passwords are kept only as
mosquitto's hashes in ``<run_dir>/mosquitto/passwords``; the accounts survive ``stack down`` / ``up``.

Removing an account disconnects the meter at once (mosquitto re-checks connected clients on reload).
Rotation is two-phase so the meter is never locked out: the new password goes to the meter alone on its
credentials topic (TLS; only the bridge's account writes it, only that meter reads it); the meter stores
it and confirms on its status topic with a proof only the password's holder can give (SHA-256 of
``<request id>:<password>``); only then does the broker switch, which ends the meter's old session, and the meter logs in again with
the new password at once (its readings wait in its buffer meanwhile). A meter that does not confirm keeps
its old password.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from pathlib import Path

from gridflow.settings import Settings
from gridflow.stack.mqtt_auth import SERVICE_USERS, new_password, read_users
from gridflow.stack.processes import Launcher, StackError

CREDENTIALS_COMMAND = "credentials"
CREDENTIALS_ACK = "credentials_ack"


class MeterAccounts:
    def __init__(self, run_dir: Path, launcher: Launcher):
        self.data_dir = Path(run_dir) / "mosquitto"
        self.launcher = launcher

    @property
    def password_file(self) -> Path:
        return self.data_dir / "passwords"

    def list(self) -> list[str]:
        return sorted(user for user in read_users(self.password_file) if user not in SERVICE_USERS)

    def set(self, accounts: dict[str, str]) -> None:
        self._refuse_service_users(accounts)
        from gridflow.stack import services

        services.reload_mosquitto_accounts(self.launcher, self.data_dir, accounts)

    def add(self, household_id: str) -> str:
        """A new account with a generated password (returned, to provision the meter with)."""
        if household_id in self.list():
            raise StackError(f"meter {household_id} already has an account; rotate or remove it")
        password = new_password()
        self.set({household_id: password})
        return password

    def remove(self, households) -> None:
        households = list(households)
        self._refuse_service_users(households)
        unknown = sorted(set(households) - set(self.list()))
        if unknown:
            raise StackError(f"no meter account for {', '.join(unknown)}")
        from gridflow.stack import services

        services.reload_mosquitto_accounts(self.launcher, self.data_dir, remove=households)

    def rotate(self, settings: Settings, household_id: str, timeout_s: float = 60.0) -> None:
        """Give a meter a new password without locking it out (see the module's description)."""
        import paho.mqtt.client as mqtt

        from gridflow.mqtt_tls import client_context

        if household_id not in self.list():
            raise StackError(f"no meter account for {household_id}")
        if not settings.mqtt.tls:
            raise StackError("rotation sends the new password to the meter: it needs mqtt.tls (stack.mqtt_tls)")
        password, nonce = new_password(), secrets.token_hex(8)
        proof = hashlib.sha256(f"{nonce}:{password}".encode()).hexdigest()
        status = settings.mqtt.status_topic.format(household_id=household_id)
        credentials = settings.mqtt.credentials_topic.format(household_id=household_id)
        subscribed, confirmed = threading.Event(), threading.Event()

        def on_message(client, userdata, message) -> None:
            try:
                answer = json.loads(message.payload)
            except ValueError:
                return
            if (
                isinstance(answer, dict)
                and answer.get("type") == CREDENTIALS_ACK
                and answer.get("id") == nonce
                and hmac.compare_digest(str(answer.get("proof", "")), proof)
            ):
                confirmed.set()

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gridflow-rotate-{nonce}", protocol=mqtt.MQTTv311
        )
        client.username_pw_set(settings.bridge.mqtt_username, settings.bridge.mqtt_password)
        context = client_context(settings.mqtt)
        if context is not None:
            client.tls_set_context(context)
        client.on_message = on_message
        client.on_subscribe = lambda *args: subscribed.set()
        client.connect(settings.mqtt.host, settings.mqtt.port)
        client.loop_start()
        try:
            client.subscribe(status, qos=1)
            if not subscribed.wait(10):
                raise StackError(f"could not subscribe to {status} as {settings.bridge.mqtt_username}")
            command = {"type": CREDENTIALS_COMMAND, "id": nonce, "password": password}
            client.publish(credentials, json.dumps(command), qos=1).wait_for_publish(10)
            if not confirmed.wait(timeout_s):
                raise StackError(
                    f"meter {household_id} did not confirm the new password within {timeout_s:g} s (offline?); "
                    "its password is unchanged"
                )
        finally:
            client.loop_stop()
            client.disconnect()
        self.set({household_id: password})

    @staticmethod
    def _refuse_service_users(users) -> None:
        taken = sorted(set(users) & set(SERVICE_USERS))
        if taken:
            raise StackError(f"{', '.join(taken)} is a service account, not a meter")
