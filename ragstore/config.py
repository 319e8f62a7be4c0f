"""One config file (YAML or TOML) names the embedder and the store; swapping backends is a one-block edit.

```yaml
data_dir: .ragstore            # relative paths are relative to this file's folder
embedder:
  type: sentence-transformers
  model: all-MiniLM-L6-v2
store:
  type: faiss
  index: hnsw
ingest: {chunk_size: 1000, chunk_overlap: 150}
```

``${VAR}`` and ``${VAR:-default}`` in any string are replaced from the environment (for secrets). Every
block is validated when the file is loaded, so a wrong key or value fails before any work, naming it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic import ValidationError as PydanticValidationError

from .errors import ConfigError
from .registry import describe_problems, embedder_class, split_block, store_class, validate_options

CONFIG_NAMES = ("ragstore.yaml", "ragstore.yml", "ragstore.toml")
ENV_VAR = "RAGSTORE_CONFIG"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(default=1000, gt=0, description="characters per chunk")
    chunk_overlap: int = Field(default=150, ge=0)
    batch_size: int = Field(default=256, gt=0, description="chunks embedded and written per step")


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=5, gt=0)


Mode = Literal["off", "translate", "route", "both", "auto"]


class MultilingualConfig(BaseModel):
    """A multilingual embedder over a second index of the same documents, kept in step on every write."""

    model_config = ConfigDict(extra="forbid")

    embedder: dict[str, Any] = Field(
        description="e.g. {type: sentence-transformers, model: intfloat/multilingual-e5-small}"
    )
    store: dict[str, Any] | None = Field(
        default=None, description="default: the main store's type with its own path/collection (suffix -ml)"
    )


class BilingualConfig(BaseModel):
    """Chinese questions over English documents (``ragstore.bilingual``); overridable per search."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "off"
    translator: Literal["dictionary", "marian", "llm"] = Field(
        default="dictionary", description="dictionary (offline), marian (a MarianMT model) or llm (an endpoint)"
    )
    translator_options: dict[str, Any] = Field(
        default_factory=dict,
        description="marian: model, device, batch_size, num_beams; "
        "llm: base_url, model, api_key, timeout, retries, fallback",
    )
    max_chars: int = Field(default=1000, gt=0, description="longer queries are truncated with a warning")
    multilingual: MultilingualConfig | None = Field(default=None, description="needed by route and both")
    rrf_k: int = Field(default=60, gt=0, description="reciprocal rank fusion constant for mode both")


class RagstoreConfig(BaseModel):
    """The validated config. ``embedder``/``store`` blocks are checked against the chosen class's options."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str = ".ragstore"
    embedder: dict[str, Any] = Field(
        default_factory=lambda: {"type": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
    )
    store: dict[str, Any] = Field(default_factory=lambda: {"type": "faiss"})
    cache: bool = Field(default=True, description="cache embeddings on disk under data_dir/cache")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    bilingual: BilingualConfig = Field(default_factory=BilingualConfig)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def source(self) -> str | None:
        """The file this config came from, if any."""
        return self._source

    @property
    def data_path(self) -> Path:
        path = Path(os.path.expanduser(self.data_dir))
        return path if path.is_absolute() else self._base_dir / path

    def store_block(self) -> dict[str, Any]:
        """The store block with its default path (``data_dir/<type>``) filled in and made absolute."""
        block = dict(self.store)
        kind = str(block.get("type"))
        cls = store_class(kind)
        fields = getattr(getattr(cls, "Options", None), "model_fields", {})
        if "path" in fields:
            path = block.get("path") or str(Path(self.data_dir) / kind.replace(".", "_").replace(":", "_"))
            path = os.path.expanduser(path)
            block["path"] = path if Path(path).is_absolute() else str(self._base_dir / path)
        return block

    def multilingual_store_block(self) -> dict[str, Any] | None:
        """The second index: as configured, else the main store's type in its own place."""
        ml = self.bilingual.multilingual
        if ml is None:
            return None
        block = dict(ml.store) if ml.store is not None else {"type": self.store.get("type")}
        kind = str(block.get("type"))
        fields = getattr(getattr(store_class(kind), "Options", None), "model_fields", {})
        if "path" in fields and not any(block.get(k) for k in ("dsn", "host", "url", "uri")):
            default = str(Path(self.data_dir) / (kind.replace(".", "_").replace(":", "_") + "-ml"))
            path = os.path.expanduser(block.get("path") or default)
            block["path"] = path if Path(path).is_absolute() else str(self._base_dir / path)
        for key in ("collection", "table"):  # same server as the main store: another collection
            if key in fields and ml.store is None and key in self.store:
                block[key] = f"{self.store[key]}_ml"
        return block

    def validate_blocks(self) -> None:
        """Resolve both classes and validate their options (fails fast, naming the key)."""
        kind, options = split_block(self.embedder, "embedder")
        validate_options(embedder_class(kind), options, "embedder")
        kind, options = split_block(self.store, "store")
        validate_options(store_class(kind), options, "store")
        ml = self.bilingual.multilingual
        if ml is not None:
            kind, options = split_block(ml.embedder, "bilingual.multilingual.embedder")
            validate_options(embedder_class(kind), options, "bilingual.multilingual.embedder")
            block = self.multilingual_store_block() or {}
            kind, options = split_block(block, "bilingual.multilingual.store")
            validate_options(store_class(kind), options, "bilingual.multilingual.store")
        if self.bilingual.mode in ("route", "both") and ml is None:
            raise ConfigError(f"bilingual.mode {self.bilingual.mode!r} needs a bilingual.multilingual block")


def interpolate(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a nested structure."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} (used in {where or 'config'}) is not set")

        return _ENV_RE.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: interpolate(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.').upper()}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def find_config(start: Path | None = None) -> Path | None:
    """``$RAGSTORE_CONFIG``, else ``ragstore.yaml|yml|toml`` in the current folder, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    folder = start or Path.cwd()
    return next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)


def read_mapping(source: str | os.PathLike[str] | Mapping[str, Any] | None, what: str) -> tuple[Any, Path, str]:
    """(data, folder relative paths resolve against, " in <file>" for messages) from a YAML file or a dict;
    shared by the bench and finetune configs."""
    if source is None:
        return {}, Path.cwd(), ""
    if isinstance(source, Mapping):
        return dict(source), Path.cwd(), ""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return data, path.resolve().parent, f" in {path}"


class FileConfig(BaseModel):
    """A config read from a YAML file (or a dict) whose relative paths resolve against the file's folder."""

    model_config = ConfigDict(extra="forbid")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    def resolve_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return (path if path.is_absolute() else self._base_dir / path).resolve()

    @classmethod
    def load(cls, source: str | os.PathLike[str] | Mapping[str, Any] | None, what: str) -> Self:
        """Read and validate; every problem is a ``ConfigError`` naming the key, before any work."""
        data, base, origin = read_mapping(source, what)
        try:
            config = cls.model_validate(interpolate(data))
        except PydanticValidationError as exc:
            raise ConfigError(f"invalid {what}{origin}: " + describe_problems(exc)) from None
        config._base_dir = base
        return config


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | RagstoreConfig | None = None,
) -> RagstoreConfig:
    """Load and validate a config from a file, a mapping, or the default locations."""
    if isinstance(source, RagstoreConfig):
        return source
    base_dir = Path.cwd()
    origin: str | None = None
    if source is None:
        found = find_config()
        data: dict[str, Any] = {}
        if found is not None:
            if not found.is_file():
                raise ConfigError(f"config file {found} does not exist")
            data, base_dir, origin = _read(found), found.resolve().parent, str(found)
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data, base_dir, origin = _read(path), path.resolve().parent, str(path)
    data = interpolate(data)
    try:
        config = RagstoreConfig.model_validate(data)
    except PydanticValidationError as exc:
        where = f" in {origin}" if origin else ""
        raise ConfigError(f"invalid config{where}: " + describe_problems(exc)) from None
    config._base_dir = base_dir
    config._source = origin
    config.validate_blocks()
    return config
