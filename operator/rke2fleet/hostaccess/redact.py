"""Removing secrets from text before it reaches a log, an exception, a status or an Event."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# RKE2 secure tokens: K10<sha256 hex of the CA>::server:<password> (or ::node:).
_TOKEN = re.compile(r"K10[0-9a-fA-F]{16,}::[A-Za-z0-9_-]+:[^\s'\"]+")
# Any PEM private key block (RSA, EC, OPENSSH, PKCS#8, encrypted), also a truncated one.
_PEM_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
    re.DOTALL,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret value, RKE2 token and PEM private key replaced by ``***``.

    Longer secrets are replaced first so that a secret containing another one is masked whole.
    Empty values are ignored (replacing "" would mangle everything).
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PEM_KEY.sub(MASK, text)
    return _TOKEN.sub(MASK, text)
