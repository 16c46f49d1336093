"""Page tokens: ``HMAC-SHA256(secret, role)`` where the role is ``household:<id>`` or ``operator``.

A household's token opens only that household's page and data; the operator token opens only the
operator view. The secret is ``web.secret``, or (empty) a random key generated once and kept,
readable by its owner only, in ``<stack.run_dir>/web-secret`` so ``gridflow page token`` and
``gridflow page serve`` agree.

>>> tokens = PageTokens(b"0123456789abcdef")
>>> tokens.household("h-1") == tokens.household("h-1") != tokens.household("h-2")
True
>>> tokens.opens_household("h-1", tokens.household("h-1")), tokens.opens_household("h-2", tokens.household("h-1"))
(True, False)
>>> tokens.opens_operator(tokens.household("operator"))
False
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gridflow.settings import Settings

SECRET_FILE = "web-secret"
TOKEN_HEX = 32  # 128 bits of the HMAC


class PageTokens:
    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret

    def _token(self, role: str) -> str:
        return hmac.new(self._secret, role.encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]

    def household(self, household_id: str) -> str:
        return self._token(f"household:{household_id}")

    def operator(self) -> str:
        return self._token("operator")

    def opens_household(self, household_id: str, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(self.household(household_id).encode(), token.encode())

    def opens_operator(self, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(self.operator().encode(), token.encode())


def load_tokens(settings: Settings) -> PageTokens:
    """Tokens keyed by ``web.secret``, or by the secret stored in the run folder (created if missing)."""
    if settings.web.secret:
        return PageTokens(settings.web.secret.encode())
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
    return PageTokens(secret.encode())
