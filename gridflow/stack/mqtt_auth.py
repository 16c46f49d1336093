"""Per-device MQTT credentials and the access-control list for mosquitto.

Meters log in with their household id as user name. The ACL lets a meter publish only to its own
readings and status topics and subscribe only to its own commands topic (mosquitto's ``%u`` pattern),
the bridge read every meter's readings and status and write every meter's commands, and the fleet
simulator speak for any meter. Passwords are stored hashed (``mosquitto_passwd -U``); mosquitto reloads
both files on SIGHUP and then disconnects clients whose account is gone or whose password changed.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from gridflow.contracts import ID, ID_RULE
from gridflow.stack.processes import StackError

BRIDGE_USER = "gridflow-bridge"
SIMULATOR_USER = "gridflow-simulator"


def acl_text(
    readings_template: str,
    commands_template: str,
    status_template: str,
    adapter_templates=(),
    home_assistant_template: str = "meters/{household_id}/homeassistant",
    credentials_template: str = "meters/{household_id}/credentials",
) -> str:
    """The ACL; ``adapter_templates`` are the topics of other payload formats (``bridge.adapters``), which
    a meter may write under its own household and the bridge reads like the readings. The household's
    account reads its Home Assistant discovery tree, the bridge's (the downlink) writes every one."""
    any_ha = home_assistant_template.replace("{household_id}", "+") + "/#"
    own_ha = home_assistant_template.replace("{household_id}", "%u") + "/#"
    any_readings = readings_template.replace("{household_id}", "+")
    any_commands = commands_template.replace("{household_id}", "+")
    any_status = status_template.replace("{household_id}", "+")
    adapters_any = [t.replace("{household_id}", "+") for t in adapter_templates]
    adapters_own = [t.replace("{household_id}", "%u") for t in adapter_templates]
    return "\n".join(
        [
            "# written by gridflow: meters publish only their own readings and read only their own commands",
            f"user {BRIDGE_USER}",
            f"topic read {any_readings}",
            f"topic write {any_commands}",
            f"topic read {any_status}",
            f"topic write {any_ha}",
            f"topic write {credentials_template.replace('{household_id}', '+')}",
            *(f"topic read {topic}" for topic in adapters_any),
            f"user {SIMULATOR_USER}",
            f"topic write {any_readings}",
            f"topic read {any_commands}",
            f"topic write {any_status}",
            f"pattern write {readings_template.replace('{household_id}', '%u')}",
            f"pattern write {status_template.replace('{household_id}', '%u')}",
            *(f"pattern write {topic}" for topic in adapters_own),
            f"pattern read {commands_template.replace('{household_id}', '%u')}",
            f"pattern read {own_ha}",
            f"pattern read {credentials_template.replace('{household_id}', '%u')}",
            "",
        ]
    )


SERVICE_USERS = (BRIDGE_USER, SIMULATOR_USER)


def _check_users(users) -> None:
    bad = [user for user in users if not isinstance(user, str) or not ID.match(user)]
    if bad:
        # the ACL puts the user name into topics (%u): no wildcards, separators or look-alike letters
        raise StackError(f"MQTT user names must be {ID_RULE}: {bad[:5]}")


def _hashed(folder: Path, accounts: dict[str, str]) -> dict[str, str]:
    """``user -> user:<hash>`` lines for ``accounts``, hashed by mosquitto_passwd. The plain passwords
    exist only in a file readable by its owner, for as long as mosquitto_passwd needs it."""
    if not accounts:
        return {}
    bad = sorted(user for user, password in accounts.items() if not password or any(c in password for c in ":\r\n"))
    if bad:
        raise StackError(f"MQTT passwords must be non-empty without ':' or line breaks (users {bad[:5]})")
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    plain = folder / f".passwords.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{user}:{password}\n" for user, password in accounts.items()))
        result = subprocess.run([tool, "-U", str(plain)], capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"mosquitto_passwd failed: {result.stderr.strip()}")
        return {line.split(":", 1)[0]: line for line in plain.read_text().splitlines() if line}
    finally:
        plain.unlink(missing_ok=True)


def read_users(path: Path) -> list[str]:
    """The user names in a password file (no passwords: those are hashes)."""
    if not path.exists():
        return []
    return [line.split(":", 1)[0] for line in path.read_text().splitlines() if ":" in line]


def update_password_file(path: Path, accounts: dict[str, str] | None = None, remove=()) -> None:
    """Set the passwords of ``accounts`` (adding users as needed) and drop the users in ``remove``; every
    other line is kept as it is. The file is replaced in one step, readable by its owner only."""
    accounts = accounts or {}
    _check_users([*accounts, *remove])
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the CLI, a test and 'stack up' may change accounts at once
        _update_locked(path, accounts, remove)


def _update_locked(path: Path, accounts: dict[str, str], remove) -> None:
    lines = {}
    if path.exists():
        lines = {line.split(":", 1)[0]: line for line in path.read_text().splitlines() if ":" in line}
    for user in remove:
        lines.pop(user, None)
    lines.update(_hashed(path.parent, accounts))
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{line}\n" for line in lines.values()))
    draft.replace(path)


def new_password() -> str:
    return secrets.token_urlsafe(18)
