"""Join tokens (reference §4)."""

from __future__ import annotations

import hashlib
import re
import secrets

SECURE_TOKEN_RE = re.compile(r"^K10[0-9a-f]{64}::(server|node):.+$")

# Prints the sha256 of the password part of a token file (sh function, for the host-side
# scripts). RKE2 keeps the cluster's token on every server in the secure form
# `K10<ca hash>::server:<password>`; the password is what the datastore is encrypted with.
TOK_SHA256_FN = (
    "tok_sha256() { t=$(cat \"$1\" 2>/dev/null) || return 0; [ -n \"$t\" ] || return 0\n"
    '  case $t in K10*::*) t=${t#*::}; t=${t#*:};; esac\n'
    "  printf %s \"$t\" | sha256sum | cut -d ' ' -f 1; }\n"
)


# `rke2 token rotate`: the new token reaches the host on stdin (never in the SSH command line) and
# rke2 hides its own arguments from ps (k3s pkg/cli/token: gspt.SetProcTitle); --new-token has no
# environment variable. rke2 reads the old token from the server's token file.
ROTATE_ARGV = ["sh", "-c", 'IFS= read -r t && exec rke2 token rotate --new-token "$t"']


def generate_token() -> str:
    # Short form: RKE2's first server turns it into the secure form with its CA hash.
    return secrets.token_hex(32)


def is_secure(token: str) -> bool:
    return bool(SECURE_TOKEN_RE.match(token))


def password_of(token: str) -> str:
    """The password part of a token, as TOK_SHA256_FN reads it on a host."""
    if token.startswith("K10") and "::" in token:
        return token.split("::", 1)[1].split(":", 1)[-1]
    return token


def password_sha256(token: str) -> str:
    """What identifies a cluster's token without revealing it; compared, never stored or shown."""
    return hashlib.sha256(password_of(token.strip()).encode()).hexdigest()


def token_values(token: str) -> list[str]:
    """Every form of the token worth redacting: the whole and, for the secure form, the password."""
    values = [token]
    if is_secure(token):
        values.append(token.split(":", 3)[-1])
    return [v for v in values if v]
