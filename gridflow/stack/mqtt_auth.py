"""Per-device MQTT credentials and the access-control list for mosquitto.

Meters log in with their household id as user name. The ACL lets a meter publish only to its own
readings topic and subscribe only to its own commands topic (mosquitto's ``%u`` pattern), the bridge
read every meter's readings and write every meter's commands, and the fleet simulator speak for any
meter. Passwords are stored hashed (``mosquitto_passwd -U``); mosquitto reloads both files on SIGHUP.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from gridflow.stack.processes import StackError

BRIDGE_USER = "gridflow-bridge"
SIMULATOR_USER = "gridflow-simulator"


def acl_text(readings_template: str, commands_template: str) -> str:
    any_readings = readings_template.replace("{household_id}", "+")
    any_commands = commands_template.replace("{household_id}", "+")
    return "\n".join(
        [
            "# written by gridflow: meters publish only their own readings and read only their own commands",
            f"user {BRIDGE_USER}",
            f"topic read {any_readings}",
            f"topic write {any_commands}",
            f"user {SIMULATOR_USER}",
            f"topic write {any_readings}",
            f"topic read {any_commands}",
            f"pattern write {readings_template.replace('{household_id}', '%u')}",
            f"pattern read {commands_template.replace('{household_id}', '%u')}",
            "",
        ]
    )


def write_password_file(path: Path, accounts: dict[str, str]) -> None:
    """Write ``user:password`` lines and hash them in place with mosquitto_passwd."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    bad = [user for user in accounts if not user or ":" in user or any(c.isspace() for c in user)]
    if bad:
        raise StackError(f"MQTT user names must be non-empty without ':' or spaces: {bad[:5]}")
    plain = path.with_suffix(".tmp")
    plain.write_text("".join(f"{user}:{password}\n" for user, password in accounts.items()))
    os.chmod(plain, 0o600)
    result = subprocess.run([tool, "-U", str(plain)], capture_output=True, text=True)
    if result.returncode != 0:
        plain.unlink(missing_ok=True)
        raise StackError(f"mosquitto_passwd failed: {result.stderr.strip()}")
    plain.replace(path)


def new_password() -> str:
    return secrets.token_urlsafe(18)
