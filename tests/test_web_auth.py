"""Access codes and sessions (``gridflow.web.auth``) with a hand-driven clock: issue, verify, expire,
revoke and rotate, and what is (not) stored."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from gridflow.web.auth import ALPHABET, CODE_CHARS, Credentials, SessionLimits, SignInThrottle, normalise_code

SECRET = b"0123456789abcdef0123"
MINUTE = 60_000


class Clock:
    def __init__(self, now_ms: int = 1_800_000_000_000):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def credentials(tmp_path, clock):
    store = Credentials(
        tmp_path / "credentials.db",
        SECRET,
        household=SessionLimits(idle_ms=30 * MINUTE, max_ms=120 * MINUTE),
        operator=SessionLimits(idle_ms=5 * MINUTE, max_ms=20 * MINUTE),
        clock=clock,
    )
    yield store
    store.close()


def test_a_code_opens_only_its_own_household_and_is_stored_only_as_a_digest(credentials, tmp_path):
    _, code_a = credentials.issue("h-a")
    _, code_b = credentials.issue("h-b")
    assert code_a != code_b and len(code_a.replace("-", "")) == CODE_CHARS
    assert set(code_a.replace("-", "")) <= set(ALPHABET)
    a = credentials.verify(code_a)
    assert a.opens_household("h-a") and not a.opens_household("h-b") and not a.opens_operator_view
    assert credentials.verify(code_a.lower().replace("-", " ")).subject == "h-a"  # typed from a letter
    assert credentials.verify(code_a[:-1] + ("0" if code_a[-1] != "0" else "1")) is None
    assert credentials.verify("") is None and credentials.verify(None) is None
    raw = (tmp_path / "credentials.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("*-wal"))
    for code in (code_a, code_b):
        assert code.encode() not in raw and normalise_code(code).encode() not in raw
    assert oct((tmp_path / "credentials.db").stat().st_mode & 0o777) == "0o600"


def test_operator_roles_and_their_rights(credentials):
    viewer = credentials.verify(credentials.issue("ops-1", "viewer")[1])
    operator = credentials.verify(credentials.issue("ops-2", "operator")[1])
    assert viewer.opens_operator_view and not viewer.may_revoke and not viewer.opens_household("ops-1")
    assert operator.opens_operator_view and operator.may_revoke
    with pytest.raises(ValueError, match="role must be one of household, viewer, operator"):
        credentials.issue("ops-3", "admin")
    for bad in ("..", "-rf", "h/1", "h+", "h#", "hh-bravо"):  # the last one ends in a Cyrillic 'о'
        with pytest.raises(ValueError, match="must match"):
            credentials.issue(bad)


def test_revoking_a_code_ends_its_sessions_at_once_and_no_one_elses(credentials):
    id_a, code_a = credentials.issue("h-a")
    _, code_b = credentials.issue("h-b")
    cookie_a, _ = credentials.open_session(credentials.verify(code_a))
    cookie_b, _ = credentials.open_session(credentials.verify(code_b))
    assert credentials.session(cookie_a).principal.subject == "h-a"
    assert credentials.revoke(code_id=id_a) == 1
    assert credentials.session(cookie_a) is None and credentials.verify(code_a) is None
    assert credentials.session(cookie_b).principal.subject == "h-b" and credentials.verify(code_b) is not None
    assert credentials.revoke(code_id=id_a) == 0  # already revoked
    states = {row["id"]: row["state"] for row in credentials.listing()}
    assert states[id_a] == "revoked" and list(states.values()).count("active") == 1


def test_rotation_replaces_every_code_of_a_household(credentials):
    old = [credentials.issue("h-a")[1] for _ in range(2)]
    sessions = [credentials.open_session(credentials.verify(code))[0] for code in old]
    assert credentials.revoke(household="h-a") == 2
    new = credentials.issue("h-a")[1]
    assert [credentials.verify(code) for code in old] == [None, None]
    assert [credentials.session(cookie) for cookie in sessions] == [None, None]
    assert credentials.verify(new).subject == "h-a"
    with pytest.raises(ValueError, match="exactly one"):
        credentials.revoke(household="h-a", operator="ops")


def test_sessions_end_when_idle_and_at_their_absolute_end(credentials, clock):
    code = credentials.issue("h-a")[1]
    cookie, _ = credentials.open_session(credentials.verify(code))
    for _ in range(3):  # used every 25 minutes: the idle limit (30) never hits ...
        clock.now_ms += 25 * MINUTE
        assert credentials.session(cookie) is not None
    clock.now_ms += 25 * MINUTE  # ... 100 minutes in; the absolute end is 120
    assert credentials.session(cookie) is not None
    clock.now_ms += 21 * MINUTE
    assert credentials.session(cookie) is None, "the absolute end must hold however often the session is used"
    idle, _ = credentials.open_session(credentials.verify(code))
    clock.now_ms += 30 * MINUTE
    assert credentials.session(idle) is None, "30 minutes unused must end a household session"
    operator = credentials.verify(credentials.issue("ops", "viewer")[1])
    short, _ = credentials.open_session(operator)
    clock.now_ms += 5 * MINUTE
    assert credentials.session(short) is None, "operator sessions have their own, shorter limits"
    assert credentials.session("forged-cookie-value") is None and credentials.session("x" * 500) is None


def test_a_code_stops_at_its_expiry_with_its_sessions(credentials, clock):
    _, code = credentials.issue("h-a", expires_ms=clock.now_ms + 10 * MINUTE)
    cookie, _ = credentials.open_session(credentials.verify(code))
    clock.now_ms += 9 * MINUTE
    assert credentials.verify(code) is not None and credentials.session(cookie) is not None
    clock.now_ms += 1 * MINUTE
    assert credentials.verify(code) is None and credentials.session(cookie) is None
    assert [row["state"] for row in credentials.listing("h-a")] == ["expired"]
    with pytest.raises(ValueError, match="future"):
        credentials.issue("h-a", expires_ms=clock.now_ms)


def test_another_secret_opens_nothing(credentials, tmp_path, clock):
    code = credentials.issue("h-a")[1]
    cookie, _ = credentials.open_session(credentials.verify(code))
    other = Credentials(tmp_path / "credentials.db", b"another-secret-16-bytes", clock=clock)
    try:
        assert other.verify(code) is None and other.session(cookie) is None
    finally:
        other.close()


def test_the_throttle_locks_out_after_the_limit_and_lets_go_after_the_lockout():
    now = [0.0]
    throttle = SignInThrottle(max_failures=3, window_s=60, lockout_s=300, clock=lambda: now[0])
    for _ in range(2):
        throttle.fail(["ip:x", "account:h-a"])
    assert throttle.locked(["ip:x", "account:h-a"]) == 0
    now[0] = 61.0  # the first two failures left the window
    throttle.fail(["ip:x", "account:h-a"])
    assert throttle.locked(["account:h-a"]) == 0
    throttle.fail(["ip:x", "account:h-a"])
    throttle.fail(["ip:x", "account:h-a"])
    assert throttle.locked(["account:h-a"]) == 300 and throttle.locked(["account:h-b"]) == 0
    now[0] += 299
    assert throttle.locked(["ip:x"]) == pytest.approx(1.0)
    now[0] += 1
    assert throttle.locked(["ip:x", "account:h-a"]) == 0


def test_the_cli_issues_lists_rotates_and_revokes(tmp_path):
    run = [sys.executable, "-m", "gridflow.cli", "page", "token"]
    where = ["--set", f"stack.run_dir={tmp_path}"]

    def gridflow(*args, ok=True):
        done = subprocess.run([*run, *args, *where], capture_output=True, text=True)
        assert (done.returncode == 0) == ok, done.stderr
        return done

    first = gridflow("issue", "h-cli").stdout.strip()
    assert normalise_code(first) is not None
    listed = gridflow("list").stdout
    assert "h-cli" in listed and "active" in listed and first not in listed
    second = gridflow("rotate", "h-cli").stdout.strip()
    assert second != first and "revoked 1 code(s)" in gridflow("revoke", "h-cli").stderr
    assert gridflow("list", "h-cli").stdout.count("revoked") == 2
    assert "must match" in gridflow("issue", "h/../x", ok=False).stderr
    assert "--role applies to operator accounts only" in gridflow("issue", "h-1", "--role", "operator", ok=False).stderr
    operator = gridflow("issue", "--operator", "ops", "--role", "operator", "--expires-days", "1").stdout.strip()
    with sqlite3.connect(tmp_path / "web-credentials.db") as db:
        assert db.execute("SELECT role, expires_ms IS NOT NULL FROM codes WHERE subject = 'ops'").fetchall() == [
            ("operator", 1)
        ]
    assert normalise_code(operator) is not None


def test_rotating_with_refused_terms_changes_nothing_and_keeps_an_operators_role(tmp_path):
    run = [sys.executable, "-m", "gridflow.cli", "page", "token"]
    where = ["--set", f"stack.run_dir={tmp_path}"]

    def gridflow(*args):
        return subprocess.run([*run, *args, *where], capture_output=True, text=True)

    first = gridflow("issue", "h-keep").stdout.strip()
    refused = gridflow("rotate", "h-keep", "--expires-days", "0")
    assert refused.returncode != 0 and "--expires-days must be positive" in refused.stderr
    assert gridflow("list", "h-keep").stdout.count("active") == 1, "a refused rotation must revoke nothing"
    assert gridflow("issue", "--operator", "ops", "--role", "operator").returncode == 0
    assert gridflow("rotate", "--operator", "ops").returncode == 0
    with sqlite3.connect(tmp_path / "web-credentials.db") as db:
        roles = db.execute("SELECT role FROM codes WHERE subject = 'ops' AND revoked_ms IS NULL").fetchall()
    assert roles == [("operator",)], "rotating an operator account must not demote it"
    assert normalise_code(first) is not None
