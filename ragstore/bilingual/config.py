"""The bilingual block of a config: which mode, which translator (with its options typed and checked when
the config is loaded, like store options), and the multilingual second index.

It lives here, beside the code that reads it, so that ``ragstore.config`` imports the bilingual settings
and never the other way round.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from ..errors import describe_problems

Mode = Literal["off", "translate", "route", "both", "auto"]
MODES: tuple[str, ...] = ("off", "translate", "route", "both", "auto")
TranslatorName = Literal["dictionary", "marian", "llm"]


class DictionaryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    senses: int = Field(default=1, ge=1, description="glosses per word (2 adds a synonym)")


class MarianOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="Helsinki-NLP/opus-mt-zh-en", min_length=1, description="hub name or folder")
    device: str = "cpu"
    batch_size: int = Field(default=16, ge=1)
    max_input_tokens: int = Field(default=256, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    num_beams: int = Field(default=1, ge=1)
    show_progress: bool = False


class LLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, description="an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    model: str = Field(min_length=1)
    api_key: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0)
    fallback: Literal["dictionary"] | None = Field(default="dictionary", description="null: fail instead")


TRANSLATOR_OPTIONS: dict[str, type[BaseModel]] = {
    "dictionary": DictionaryOptions,
    "marian": MarianOptions,
    "llm": LLMOptions,
}


def translator_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options checked against the translator's own model; a ``ValueError`` names every bad key."""
    try:
        return TRANSLATOR_OPTIONS[name].model_validate(options).model_dump(exclude_unset=True)
    except PydanticValidationError as exc:
        raise ValueError(f"{name} translator: " + describe_problems(exc)) from None


class MultilingualConfig(BaseModel):
    """A multilingual embedder over a second index of the same documents, kept in step on every write."""

    model_config = ConfigDict(extra="forbid")

    embedder: dict[str, Any] = Field(
        description="e.g. {type: sentence-transformers, model: intfloat/multilingual-e5-small}"
    )
    store: dict[str, Any] | None = Field(
        default=None, description="default: the main store's sibling (its own path, or collection suffix _ml)"
    )


class BilingualConfig(BaseModel):
    """Chinese questions over English documents; the mode is overridable per search."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "off"
    translator: TranslatorName = Field(
        default="dictionary", description="dictionary (offline), marian (a MarianMT model) or llm (an endpoint)"
    )
    translator_options: dict[str, Any] = Field(
        default_factory=dict,
        description="dictionary: senses; marian: model, device, batch_size, num_beams, ...; "
        "llm: base_url, model, api_key, timeout, retries, fallback",
    )
    max_chars: int = Field(default=1000, gt=0, description="longer queries are truncated with a warning")
    multilingual: MultilingualConfig | None = Field(default=None, description="needed by route and both")
    rrf_k: int = Field(default=60, gt=0, description="reciprocal rank fusion constant for mode both")

    @field_validator("translator_options")
    @classmethod
    def _typed_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("translator")
        return translator_options(name, value) if name in TRANSLATOR_OPTIONS else value
