"""Secrets never leave in clear: what ragstore writes or shows of a config passes through :func:`redact`.

A config names secrets as ``${VAR}`` (expanded only in memory). Anything ragstore writes (a rewritten config,
bench results, logs, ``/v1/info``, CLI output) shows a secret key's value as ``***``, a libpq ``password=``
as ``password=***`` and a URL's ``user:password@`` as ``user:***@``; everything else is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
#: keys whose whole value is a secret, wherever they appear in a config block
SECRET_KEYS = frozenset({"api_key", "api_keys", "password", "token", "secret", "headers", "authorization"})
_LIBPQ_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)([^@\s/]*)(@)")
_URL_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:password|token|api_key)=)([^&\s]*)")


def redact_text(text: str) -> str:
    """A DSN, URI or message with its passwords masked."""
    text = _LIBPQ_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _URL_QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def redact(value: Any) -> Any:
    """A copy of a config value (mapping, list or scalar) fit to write or show."""
    if isinstance(value, Mapping):
        return {k: (MASK if str(k).lower() in SECRET_KEYS and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def key_digest(token: str) -> bytes:
    """SHA-256 of an API key: what a config keeps (``serve.api_keys[].sha256``) and what a request's key is
    compared against, so no config file holds a working key."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def hash_key(token: str) -> str:
    """The hex ``sha256`` a ``serve.api_keys`` entry keeps for ``token`` (``ragstore hash-key``)."""
    return key_digest(token).hex()


__all__ = ["MASK", "SECRET_KEYS", "hash_key", "key_digest", "redact", "redact_text"]
