"""Records every layer shares: what goes into a store (``Document``) and what comes out (``Hit``)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np

from .errors import ValidationError

#: Metadata values are JSON scalars. Nested objects and nulls are refused because the engines disagree on
#: how to store and filter them; flatten them into keys instead.
MetadataValue: TypeAlias = str | int | float | bool
Metadata: TypeAlias = dict[str, MetadataValue]
Metric: TypeAlias = Literal["cosine", "dot", "l2"]
METRICS: tuple[str, ...] = ("cosine", "dot", "l2")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")
MAX_ID_LENGTH = 512

# One rule per character class, the same on every backend (checked before anything is written):
# - NUL and lone surrogates are refused in ids, metadata strings, filter values and document text: PostgreSQL
#   text cannot hold NUL, SQLite's JSON functions stop at it, and a lone surrogate is not UTF-8.
# - Other C0 control characters (U+0001-U+001F) except tab, newline and carriage return are refused in ids,
#   metadata strings and filter values (no engine's filter language can name them all), allowed in text.
# - Everything else (quotes, backslashes, tab/newline/CR, DEL, any Unicode) round-trips unchanged.
_BAD_IN_TEXT = re.compile("[\x00\ud800-\udfff]")
_BAD_IN_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _refuse(value: str, match: re.Match[str], what: str) -> ValidationError:
    ch = match.group()
    kind = "NUL" if ch == "\x00" else ("a lone surrogate" if "\ud800" <= ch <= "\udfff" else "a control character")
    shown = value if len(value) <= 60 else value[:57] + "..."
    return ValidationError(f"{what} {shown!r} contains {kind} ({ch!r}) at position {match.start()}")


def check_value_chars(value: str, what: str) -> str:
    """Refuse what ids, metadata strings and filter values may not contain (see the rule above)."""
    if value.isascii() and value.isprintable():  # the common case, decided in C without the regex
        return value
    match = _BAD_IN_VALUE.search(value)
    if match is not None:
        raise _refuse(value, match, what)
    return value


def check_text_chars(value: str, what: str) -> str:
    """Refuse what document text may not contain: NUL and lone surrogates."""
    if value.isascii() and "\x00" not in value:  # ASCII holds no surrogate: only NUL to look for
        return value
    match = _BAD_IN_TEXT.search(value)
    if match is not None:
        raise _refuse(value, match, what)
    return value


def content_id(text: str, *namespace: str) -> str:
    """Derive a stable id from content so re-ingesting the same text is idempotent. Text the character rule
    refuses (NUL, a lone surrogate) is refused here, by name, before it could raise a raw encoding error;
    namespace parts (file paths, which may carry undecodable bytes) hash as they are."""
    check_text_chars(text, "text")
    h = hashlib.sha256()
    for part in namespace:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    h.update(text.encode("utf-8"))
    return h.hexdigest()[:32]


@dataclass
class Document:
    """A piece of text with metadata and (once embedded) its vector.

    ``id`` is the caller's; when left empty it is derived from the text (see :func:`content_id`).
    """

    text: str
    id: str = ""
    metadata: Metadata = field(default_factory=dict)
    vector: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.id and isinstance(self.text, str):
            self.id = content_id(self.text)


#: what a ``Hit.score`` is, by ``Hit.scale``: every one is higher-is-better, but only the first three are
#: similarities, and a fused score is a rank-fusion number (a top hit of 0.75 is simply the maximum)
SCALES: dict[str, str] = {
    "cosine": "cosine similarity in [-1, 1]",
    "dot": "inner product",
    "l2": "minus the Euclidean distance",
    "bm25": "BM25 (unbounded, per query)",
    "rrf": "weighted reciprocal-rank fusion: sum of weight / (rrf_k + rank); orders hits, not a similarity",
    "alpha": "alpha fusion of min-max normalised leg scores, in [0, 1] (1 = best on both legs)",
}


@dataclass(slots=True)
class Hit:
    """One search result. ``score`` is higher-is-better on every backend; ``scale`` says what it is (a key of
    ``SCALES``: the store's metric for a dense search, ``bm25``, or the fusion that made it)."""

    id: str
    score: float
    text: str
    metadata: Metadata = field(default_factory=dict)
    scale: str = field(default="cosine", compare=False)


class Ranked(NamedTuple):
    """One leg of a fused query as arrays: ids and higher-is-better scores (float64, the scale ``Hit.score``
    would carry), best first, ties in any order. A fusion reads 50 candidates per leg and keeps k; building a
    ``Hit`` per candidate cost more than the search itself on the sub-millisecond engines."""

    ids: list[str]
    scores: np.ndarray

    @classmethod
    def of(cls, hits: list[Hit]) -> Ranked:
        return cls([h.id for h in hits], np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits)))


_VALID_KEYS: set[str] = set()  # keys already checked; metadata keys repeat across documents


def validate_key(key: object, what: str = "metadata key") -> str:
    """Keys must be plain identifiers so every engine can index and filter them the same way."""
    if key in _VALID_KEYS:
        return key
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValidationError(
            f"invalid {what} {key!r}: use letters, digits, '_' or '-', starting with a letter or '_' "
            "(at most 128 characters)"
        )
    if len(_VALID_KEYS) < 100_000:
        _VALID_KEYS.add(key)
    return key


_INT64 = (-(2**63), 2**63 - 1)


def validate_metadata(metadata: Mapping[str, Any] | None, doc_id: str = "") -> Metadata:
    """Check a metadata mapping and return a plain dict copy."""
    if metadata is None:
        return {}
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
        where = f" of document {doc_id!r}" if doc_id else ""
        raise ValidationError(f"metadata{where} must be a mapping, got {type(metadata).__name__}")
    out: Metadata = {}
    for key, value in metadata.items():
        validate_key(key)
        t = type(value)
        if t is str and not (value.isascii() and value.isprintable()) and _BAD_IN_VALUE.search(value):
            check_value_chars(value, f"metadata value for {key!r}" + (f" of document {doc_id!r}" if doc_id else ""))
        plain = (
            t is str
            or t is bool
            or (t is int and _INT64[0] <= value <= _INT64[1])
            or (t is float and math.isfinite(value))
        )
        out[key] = value if plain else _slow_value(key, value, doc_id)
    return out


def _slow_value(key: str, value: Any, doc_id: str) -> MetadataValue:
    """Subclasses and numpy scalars become plain Python values; anything else is refused, by name."""
    where = f" of document {doc_id!r}" if doc_id else ""
    if isinstance(value, bool | str):
        return (
            bool(value)
            if isinstance(value, bool)
            else check_value_chars(str(value), f"metadata value for {key!r}{where}")
        )
    if isinstance(value, int | float | np.integer | np.floating):
        number = value.item() if isinstance(value, np.generic) else value
        if isinstance(number, float) and not math.isfinite(number):
            raise ValidationError(f"metadata value for {key!r}{where} is not finite: {value!r}")
        if isinstance(number, int) and not _INT64[0] <= number <= _INT64[1]:
            raise ValidationError(f"metadata value for {key!r}{where} does not fit in 64 bits: {value!r}")
        return number
    raise ValidationError(
        f"metadata value for {key!r}{where} has type {type(value).__name__}; "
        "only str, int, float and bool are stored (flatten nested values into keys)"
    )


def validate_id(doc_id: object) -> str:
    """Ids are non-empty strings every engine can store verbatim."""
    if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_LENGTH:
        raise ValidationError(f"document id must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return check_value_chars(doc_id, "document id")


__all__ = [
    "METRICS",
    "SCALES",
    "Document",
    "Hit",
    "Metadata",
    "MetadataValue",
    "Metric",
    "Ranked",
    "check_text_chars",
    "check_value_chars",
    "content_id",
    "validate_id",
    "validate_key",
    "validate_metadata",
]
