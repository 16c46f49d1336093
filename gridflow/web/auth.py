"""Who may open which page: access codes, sessions, sign-in throttling and CSRF tokens.

An **access code** is 100 random bits written as 20 Crockford base-32 characters in groups of four
(``7K2Q-...``), issued by ``gridflow page token issue``. A household code opens only that
household's page and data; an operator code belongs to a named operator account with a role,
``viewer`` (the operator view) or ``operator`` (the view, and revoking a household's access). Codes
are kept as ``HMAC-SHA256(secret, code)`` only, with their creation time, an optional expiry and the
time they were revoked; the code itself is shown once, when issued.

A code is exchanged for a **session** (a random cookie value, also kept only as its HMAC). Every
request looks the session up together with its code, so revoking a code ends its sessions at once,
in the page server too, without touching anyone else. Sessions end after ``web.session_idle_s``
without use and ``web.session_max_s`` after sign-in (operators: ``web.operator_session_*``).

The key is ``web.secret``, or (empty) a random key generated once and kept, readable by its owner only,
in ``<stack.run_dir>/web-secret``; the codes and sessions live in SQLite next to it
(``web-credentials.db``, or ``web.credentials_file``) so ``gridflow page token`` and
``gridflow page serve`` agree.

>>> normalise_code("7k2q-9xmd 4tnp-hw3r-abcd")
'7K2Q9XMD4TNPHW3RABCD'
>>> normalise_code("OIL0-0000-0000-0000-0000")  # look-alike letters read as the digits they resemble
'01100000000000000000'
>>> normalise_code("too short") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gridflow.contracts import ID
from gridflow.settings import Settings

SECRET_FILE = "web-secret"
CREDENTIALS_FILE = "web-credentials.db"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32: no I, L, O, U
CODE_CHARS = 20  # 100 bits
LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
ROLES = ("household", "viewer", "operator")
OPERATOR_ROLES = ("viewer", "operator")
SEEN_EVERY_MS = 60_000  # a session's last use is written at most this often

SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    id TEXT PRIMARY KEY,                -- public id, for listing and revoking: c-<8 hex>
    digest TEXT NOT NULL UNIQUE,        -- HMAC-SHA256(secret, normalised code)
    subject TEXT NOT NULL,              -- household id or operator name
    role TEXT NOT NULL CHECK (role IN ('household', 'viewer', 'operator')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,                 -- NULL: never
    revoked_ms INTEGER,                 -- NULL: in force
    last_used_ms INTEGER
);
CREATE INDEX IF NOT EXISTS codes_subject ON codes (role, subject);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,            -- HMAC-SHA256(secret, cookie value)
    code_id TEXT NOT NULL REFERENCES codes (id),
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL         -- absolute end; idle ends are checked against seen_ms
);
"""


def normalise_code(text: str) -> str | None:
    """The 20 code characters of ``text`` (case, spaces, dashes and look-alike letters forgiven), or None."""
    code = "".join(text.split()).replace("-", "").upper().translate(LOOK_ALIKES)
    if len(code) != CODE_CHARS or any(c not in ALPHABET for c in code):
        return None
    return code


def new_code() -> str:
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(code[i : i + 4] for i in range(0, CODE_CHARS, 4))


@dataclass(frozen=True)
class Principal:
    """Who a code or session belongs to."""

    code_id: str
    subject: str  # household id, or the operator's name
    role: str  # household, viewer or operator

    def opens_household(self, household_id: str) -> bool:
        return self.role == "household" and hmac.compare_digest(self.subject.encode(), household_id.encode())

    @property
    def opens_operator_view(self) -> bool:
        return self.role in OPERATOR_ROLES

    @property
    def may_revoke(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class Session:
    principal: Principal
    digest: str  # the session's stored id; CSRF tokens are derived from it


@dataclass(frozen=True)
class SessionLimits:
    idle_ms: int
    max_ms: int


class Credentials:
    """Access codes and sessions in one SQLite file shared by the CLI and the page server."""

    def __init__(
        self,
        path: Path,
        secret: bytes,
        household: SessionLimits = SessionLimits(30 * 86_400_000, 180 * 86_400_000),
        operator: SessionLimits = SessionLimits(8 * 3_600_000, 86_400_000),
        clock=lambda: int(time.time() * 1000),
    ):
        if len(secret) < 16:
            raise ValueError("the credentials secret must be at least 16 bytes")
        self._secret, self._limits, self._clock = secret, {"household": household, "operator": operator}, clock
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # owner only, before SQLite writes a byte
        self.path = path
        self._db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def mac(self, purpose: str, value: str) -> str:
        """A 128-bit tag of ``value`` for ``purpose`` (CSRF tokens), under the same secret."""
        return self._digest(f"mac:{purpose}", value)[:32]

    # --- codes -----------------------------------------------------------------------------------

    def issue(self, subject: str, role: str = "household", expires_ms: int | None = None) -> tuple[str, str]:
        """A new code for ``subject``: returns ``(code id, code)``; the code is not stored and not shown again."""
        self._check_new(subject, role, expires_ms)
        return self._insert(subject, role, expires_ms)

    def rotate(self, subject: str, role: str = "household", expires_ms: int | None = None) -> tuple[str, str, int]:
        """Revoke the subject's codes (household, or operator account) and issue one, in one transaction:
        ``(code id, code, codes revoked)``. Nothing changes when the new code's terms are refused."""
        self._check_new(subject, role, expires_ms)
        with self._transaction():
            revoked = self._revoke_where(*self._subject_filter(subject, role))
            code_id, code = self._insert(subject, role, expires_ms)
        return code_id, code, revoked

    def _check_new(self, subject: str, role: str, expires_ms: int | None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not ID.match(subject):
            raise ValueError(
                f"{'household id' if role == 'household' else 'operator name'} {subject!r} must match {ID.pattern}"
            )
        if expires_ms is not None and expires_ms <= self._clock():
            raise ValueError("the expiry must lie in the future")

    @staticmethod
    def _subject_filter(subject: str, role: str) -> tuple[str, str]:
        if role == "household":
            return "role = 'household' AND subject = ?", subject
        return "role IN ('viewer', 'operator') AND subject = ?", subject

    def _insert(self, subject: str, role: str, expires_ms: int | None) -> tuple[str, str]:
        now = self._clock()
        code = new_code()
        code_id = f"c-{secrets.token_hex(4)}"
        self._db.execute(
            "INSERT INTO codes (id, digest, subject, role, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (code_id, self._digest("code", code.replace("-", "")), subject, role, now, expires_ms),
        )
        return code_id, code

    def revoke(self, *, code_id: str | None = None, household: str | None = None, operator: str | None = None) -> int:
        """Revoke one code by id, or every code of a household or an operator account, and end their
        sessions at once; returns how many codes were revoked."""
        if [code_id, household, operator].count(None) != 2:
            raise ValueError("revoke takes exactly one of a code id, a household id or an operator name")
        if code_id is not None:
            where, value = "id = ?", code_id
        elif household is not None:
            where, value = self._subject_filter(household, "household")
        else:
            where, value = self._subject_filter(str(operator), "operator")
        with self._transaction():
            return self._revoke_where(where, value)

    def _revoke_where(self, where: str, value: str) -> int:
        ids = [
            row[0] for row in self._db.execute(f"SELECT id FROM codes WHERE {where} AND revoked_ms IS NULL", (value,))
        ]
        now = self._clock()
        self._db.executemany("UPDATE codes SET revoked_ms = ? WHERE id = ?", [(now, i) for i in ids])
        self._db.executemany("DELETE FROM sessions WHERE code_id = ?", [(i,) for i in ids])
        return len(ids)

    def listing(self, subject: str | None = None) -> list[dict]:
        """Every code (never the code itself): id, subject, role, times and its state."""
        rows = self._db.execute(
            "SELECT id, subject, role, created_ms, expires_ms, revoked_ms, last_used_ms, "
            "(SELECT COUNT(*) FROM sessions s WHERE s.code_id = codes.id) FROM codes "
            + ("WHERE subject = ? " if subject else "")
            + "ORDER BY subject, created_ms",
            (subject,) if subject else (),
        )
        now = self._clock()
        keys = ("id", "subject", "role", "created_ms", "expires_ms", "revoked_ms", "last_used_ms", "sessions")
        out = []
        for row in rows:
            entry = dict(zip(keys, row))
            entry["state"] = (
                "revoked"
                if entry["revoked_ms"] is not None
                else "expired"
                if entry["expires_ms"] is not None and entry["expires_ms"] <= now
                else "active"
            )
            out.append(entry)
        return out

    def verify(self, presented: str | None) -> Principal | None:
        """The principal a presented code belongs to, if the code is in force."""
        code = normalise_code(presented or "")
        if code is None:
            return None
        now = self._clock()
        row = self._db.execute(
            "SELECT id, subject, role FROM codes WHERE digest = ? AND revoked_ms IS NULL "
            "AND (expires_ms IS NULL OR expires_ms > ?)",
            (self._digest("code", code), now),
        ).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE codes SET last_used_ms = ? WHERE id = ?", (now, row[0]))
        return Principal(*row)

    # --- sessions --------------------------------------------------------------------------------

    def limits(self, role: str) -> SessionLimits:
        return self._limits["household" if role == "household" else "operator"]

    def open_session(self, principal: Principal) -> tuple[str, Session]:
        """A new session for ``principal``: returns the cookie value (not stored) and the session."""
        value = secrets.token_urlsafe(32)
        digest = self._digest("session", value)
        now = self._clock()
        self._db.execute(
            "INSERT INTO sessions (digest, code_id, created_ms, seen_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
            (digest, principal.code_id, now, now, now + self.limits(principal.role).max_ms),
        )
        return value, Session(principal, digest)

    def session(self, value: str | None) -> Session | None:
        """The live session a cookie value names; an expired or revoked one is deleted and gives None."""
        if not value or len(value) > 100:
            return None
        digest = self._digest("session", value)
        now = self._clock()
        row = self._db.execute(
            "SELECT c.id, c.subject, c.role, s.seen_ms, s.expires_ms, c.revoked_ms, c.expires_ms "
            "FROM sessions s JOIN codes c ON c.id = s.code_id WHERE s.digest = ?",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        code_id, subject, role, seen_ms, expires_ms, revoked_ms, code_expires_ms = row
        if (
            revoked_ms is not None
            or (code_expires_ms is not None and code_expires_ms <= now)
            or expires_ms <= now
            or now - seen_ms >= self.limits(role).idle_ms
        ):
            self._db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
            return None
        if now - seen_ms >= SEEN_EVERY_MS:
            self._db.execute("UPDATE sessions SET seen_ms = ? WHERE digest = ?", (now, digest))
        return Session(Principal(code_id, subject, role), digest)

    def close_session(self, digest: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))

    def prune(self) -> int:
        """Delete sessions past their absolute end; returns how many."""
        return self._db.execute("DELETE FROM sessions WHERE expires_ms <= ?", (self._clock(),)).rowcount

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")  # the CLI and the server may write at the same time
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


class SignInThrottle:
    """Failed sign-ins counted per client address and per account in a sliding window; past the limit
    the key is locked out (every attempt refused, right or wrong) until the lock-out ends.

    >>> t = SignInThrottle(max_failures=2, window_s=60, lockout_s=300, clock=lambda: 0.0)
    >>> t.fail(["ip:a", "h:1"]); t.locked(["ip:a"])
    0.0
    >>> t.fail(["ip:a", "h:1"]); t.locked(["h:1"]), t.locked(["ip:b", "h:2"])
    (300.0, 0.0)
    """

    MAX_KEYS = 100_000  # bounded memory under a flood from many addresses

    def __init__(self, max_failures: int, window_s: float, lockout_s: float, clock=time.monotonic):
        self.max_failures, self.window_s, self.lockout_s, self._clock = max_failures, window_s, lockout_s, clock
        self._failures: dict[str, deque] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, keys) -> float:
        """Seconds until every key in ``keys`` may try again (0 when none is locked)."""
        now = self._clock()
        return max((self._locked_until.get(k, now) - now for k in keys), default=0.0)

    def fail(self, keys) -> None:
        now = self._clock()
        if len(self._failures) > self.MAX_KEYS:
            self._prune(now)
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                times.clear()

    def succeed(self, key: str) -> None:
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]
        while len(self._failures) > self.MAX_KEYS:  # still a flood: forget the oldest windows
            self._failures.pop(next(iter(self._failures)))


def load_secret(settings: Settings) -> bytes:
    """``web.secret``, or the secret stored in the run folder (created if missing)."""
    if settings.web.secret:
        return settings.web.secret.encode()
    path = Path(settings.stack.run_dir).expanduser() / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written aside, then linked into place: a concurrent reader never sees a half-written secret
        draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process won the race; use its secret
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise ValueError(f"{path} holds no usable secret (at least 16 characters); delete it to generate one")
    return secret.encode()


def open_credentials(settings: Settings) -> Credentials:
    web = settings.web
    path = Path(web.credentials_file or Path(settings.stack.run_dir) / CREDENTIALS_FILE).expanduser()
    return Credentials(
        path,
        load_secret(settings),
        household=SessionLimits(web.session_idle_s * 1000, web.session_max_s * 1000),
        operator=SessionLimits(web.operator_session_idle_s * 1000, web.operator_session_max_s * 1000),
    )
