"""Who a request is: each key a grant of namespaces and scopes, checked before any route reads or writes.

Why here and not in the routes: one place decides, so no route can forget. Keys are compared as SHA-256
digests in constant time (a config keeps only the digest); the grant's *name* is what ``/metrics`` and logs
show, never the key.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from ..config import ApiKey, ServeConfig
from ..secrets import key_digest as digest

ALL_SCOPES = frozenset({"read", "write", "admin"})


@dataclass(frozen=True)
class Grant:
    """What one key opens: ``namespaces`` (``None``: every one) and ``scopes``."""

    name: str
    digest: bytes
    namespaces: frozenset[str] | None = None
    scopes: frozenset[str] = ALL_SCOPES

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, digest(token))


#: the caller of a server without keys (loopback only): everything
ANONYMOUS = Grant("anonymous", b"")


def grants(settings: ServeConfig) -> list[Grant]:
    """Every key from the config (plain strings open everything) and ``$RAGSTORE_API_KEYS`` (plain)."""
    out: list[Grant] = []
    plain = 0
    for entry in settings.api_keys:
        if isinstance(entry, ApiKey):
            secret = bytes.fromhex(entry.sha256) if entry.sha256 else digest(entry.key or "")
            spaces = frozenset(entry.namespaces) if entry.namespaces is not None else None
            out.append(Grant(entry.name, secret, spaces, frozenset(entry.scopes)))
        elif entry:
            plain += 1
            out.append(Grant(f"key{plain}", digest(entry)))
    for token in os.environ.get("RAGSTORE_API_KEYS", "").split(","):
        if token.strip():
            plain += 1
            out.append(Grant(f"key{plain}", digest(token.strip())))
    return out


def find(keys: list[Grant], token: str) -> Grant | None:
    """The grant of ``token``; every key is compared (constant time each), so timing tells nothing."""
    found = None
    for grant in keys:
        if grant.matches(token) and found is None:
            found = grant
    return found


__all__ = ["ANONYMOUS", "Grant", "digest", "find", "grants"]
