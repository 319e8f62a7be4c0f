"""Test helpers shipped with ragstore so third-party stores can prove conformance too (needs pytest)."""

from .conformance import (
    BadInputTests,
    CollectionTests,
    ConcurrencyTests,
    DropTests,
    EngineFailureTests,
    FilterTests,
    GetDeleteTests,
    HostileValueTests,
    LimitTests,
    PersistenceTests,
    ReopenTests,
    ScanTests,
    SearchTests,
    UpsertTests,
    VectorStoreConformance,
    make_docs,
)

__all__ = [
    "BadInputTests",
    "CollectionTests",
    "ConcurrencyTests",
    "DropTests",
    "EngineFailureTests",
    "FilterTests",
    "GetDeleteTests",
    "HostileValueTests",
    "LimitTests",
    "PersistenceTests",
    "ReopenTests",
    "ScanTests",
    "SearchTests",
    "UpsertTests",
    "VectorStoreConformance",
    "make_docs",
]
