"""Join tokens (reference §4)."""

from __future__ import annotations

import re
import secrets

SECURE_TOKEN_RE = re.compile(r"^K10[0-9a-f]{64}::(server|node):.+$")


def generate_token() -> str:
    # Short form: RKE2's first server turns it into the secure form with its CA hash.
    return secrets.token_hex(32)


def is_secure(token: str) -> bool:
    return bool(SECURE_TOKEN_RE.match(token))


def token_values(token: str) -> list[str]:
    """Every form of the token worth redacting: the whole and, for the secure form, the password."""
    values = [token]
    if is_secure(token):
        values.append(token.split(":", 3)[-1])
    return [v for v in values if v]
