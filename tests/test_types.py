from __future__ import annotations

import numpy as np
import pytest

from ragstore.errors import ValidationError
from ragstore.types import Document, content_id, validate_metadata


def test_ids_derive_from_content() -> None:
    assert Document(text="abc").id == Document(text="abc").id == content_id("abc")
    assert Document(text="abc").id != Document(text="abd").id
    assert Document(text="abc", id="mine").id == "mine"
    assert content_id("abc", "file-a") != content_id("abc", "file-b")


def test_metadata_numpy_scalars_become_python() -> None:
    meta = validate_metadata({"a": np.int64(3), "b": np.float32(0.5), "c": True, "d": "x"})
    assert meta == {"a": 3, "b": 0.5, "c": True, "d": "x"}
    assert type(meta["a"]) is int and type(meta["b"]) is float


@pytest.mark.parametrize(
    "bad", [{"a": None}, {"a": {"b": 1}}, {"a": [1]}, {"": 1}, {"$a": 1}, {"a": float("nan")}, [("a", 1)]]
)
def test_bad_metadata(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_metadata(bad)  # type: ignore[arg-type]
