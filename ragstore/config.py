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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from .bilingual.config import BilingualConfig
from .embedders.base import Embedder
from .errors import ConfigError, ValidationError
from .lexical.config import HybridConfig, SearchMode
from .query.namespaces import validate_namespace
from .stores.base import StoreOptions, VectorStore
from .stores.registry import (
    describe_problems,
    embedder_class,
    resolve_store,
    split_block,
    store_block,
    validate_options,
)

CONFIG_NAMES = ("ragstore.yaml", "ragstore.yml", "ragstore.toml")
ENV_VAR = "RAGSTORE_CONFIG"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(default=1000, gt=0, description="characters per chunk")
    chunk_overlap: int = Field(default=150, ge=0)
    batch_size: int = Field(default=256, gt=0, description="chunks embedded and written per step")
    max_file_mb: float = Field(default=100, gt=0, description="larger files are refused by name before reading")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


class SearchConfig(BaseModel):
    """Defaults for every query (overridable per call): how many hits, and dense, lexical or hybrid."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=5, gt=0)
    mode: SearchMode = Field(
        default="dense",
        description="dense (vectors), lexical (BM25) or hybrid (both, fused); lexical and "
        "hybrid turn on the store's lexical index",
    )
    hybrid: HybridConfig = Field(default_factory=HybridConfig)


#: what a key may do: read (search, explain, documents by id, embeddings, models), write (add and delete
#: documents), admin (``/v1/info`` and ``/metrics``: every namespace's counts)
KeyScope = Literal["read", "write", "admin"]


def _read_only() -> list[KeyScope]:
    return ["read"]


class ApiKey(BaseModel):
    """A key that opens one door: its namespaces (``None``: every one) and what it may do there. Kept as a
    SHA-256 hash (``ragstore hash-key``), so a config file never holds a working key; ``key`` takes a plain
    one, for ``${ENV}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="how /metrics and logs name it")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    key: str | None = Field(default=None, min_length=16, description="the plain key (use ${ENV})")
    namespaces: list[str] | None = Field(default=None, min_length=1, description="namespaces it opens (default: all)")
    scopes: list[KeyScope] = Field(default_factory=_read_only, min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.sha256 is None) == (self.key is None):
            raise ValueError(f"api key {self.name!r}: give exactly one of sha256 (recommended) or key")
        for ns in self.namespaces or []:
            try:
                validate_namespace(ns)
            except ValidationError as exc:
                raise ValueError(f"api key {self.name!r}: {exc}") from None
        return self


class ServeConfig(BaseModel):
    """``ragstore serve``: where it listens, who may call it, and how requests are batched and bounded."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="anything but loopback needs api_keys")
    port: int = Field(default=8080, gt=0, lt=65536)
    api_keys: list[str | ApiKey] = Field(
        default_factory=list,
        description="Bearer keys: a plain string (use ${ENV}) opens everything; an entry with name, sha256, "
        "namespaces and scopes opens only those; also $RAGSTORE_API_KEYS (plain, comma-separated)",
    )

    @field_validator("api_keys")
    @classmethod
    def _names_unique(cls, value: list[str | ApiKey]) -> list[str | ApiKey]:
        names = [k.name for k in value if isinstance(k, ApiKey)]
        if len(names) != len(set(names)):
            raise ValueError("api_keys: two keys share a name")
        return value

    max_batch: int = Field(default=64, gt=0, le=4096, description="texts per model call")
    max_batch_tokens: int = Field(default=16_384, gt=0, description="estimated tokens per model call")
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000, description="how long a batch waits to fill")
    max_queue: int = Field(default=4096, gt=0, description="texts waiting for the model; more: 503 + Retry-After")
    max_inputs: int = Field(default=2048, gt=0, description="inputs or documents per request")
    max_input_chars: int = Field(default=65_536, gt=0, description="characters per input text")
    max_body_bytes: int = Field(default=16 * 2**20, gt=0, description="request body limit (413 beyond)")
    cors_origins: list[str] = Field(default_factory=list, description="CORS is off unless origins are listed")
    max_connections: int = Field(
        default=1000, gt=0, description="open connections; past it the longest-idle one is closed for a new one"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, description="a connection must send complete request headers within this"
    )
    keepalive_timeout_s: float = Field(default=5.0, gt=0, le=3600, description="idle keep-alive connections close")


#: the embedder type a config block without ``type`` gets
DEFAULT_EMBEDDER = "sentence-transformers"


class RagstoreConfig(BaseModel):
    """The validated config. ``embedder``/``store`` blocks are checked against the chosen class's options."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str = ".ragstore"
    embedder: dict[str, Any] = Field(default_factory=lambda: {"type": DEFAULT_EMBEDDER, "model": "all-MiniLM-L6-v2"})
    store: dict[str, Any] = Field(default_factory=lambda: {"type": "faiss"})
    cache: bool = Field(default=True, description="cache embeddings on disk under data_dir/cache")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    bilingual: BilingualConfig = Field(default_factory=BilingualConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str | None = PrivateAttr(default=None)
    _store_spec: tuple[type[VectorStore], StoreOptions] | None = PrivateAttr(default=None)
    _ml_store_specs: dict[str, tuple[type[VectorStore], StoreOptions]] = PrivateAttr(default_factory=dict)
    _embedder_specs: dict[str, tuple[type[Embedder], dict[str, Any]]] = PrivateAttr(default_factory=dict)

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

    def _local_model(self, block: dict[str, Any]) -> dict[str, Any]:
        """A relative model folder resolves against this file's folder, like data and store paths (only
        when that folder exists: ``all-MiniLM-L6-v2`` and ``org/name`` stay hub names)."""
        out = dict(block)
        model = out.get("model")
        if isinstance(model, str) and model and not Path(os.path.expanduser(model)).is_absolute():
            candidate = self._base_dir / os.path.expanduser(model)
            if candidate.is_dir():
                out["model"] = str(candidate.resolve())
        return out

    def _route_name(self, route: str | None, multilingual: bool) -> str | None:
        if route is None and not multilingual:
            return None
        routes = self.bilingual.routes
        if not routes:
            raise ConfigError("no bilingual.multilingual block: there is no multilingual embedder")
        name = route or routes[0]
        if name not in routes:
            raise ConfigError(f"no multilingual route {name!r}; configured: {', '.join(routes)}")
        return name

    def embedder_spec(
        self, *, multilingual: bool = False, route: str | None = None
    ) -> tuple[type[Embedder], dict[str, Any]]:
        """The embedder's class and validated options (of a multilingual route's index with ``route``, or of
        the first route with ``multilingual``), resolved once per config."""
        name = self._route_name(route, multilingual)
        key = "main" if name is None else f"route:{name}"
        if key not in self._embedder_specs:
            if name is None:  # the main embedder's type defaults as documented: `embedder: {model: X}` is enough
                block, where = self._local_model({"type": DEFAULT_EMBEDDER, **self.embedder}), "embedder"
            else:
                block = self._local_model(self.bilingual.route(name).embedder)
                where = f"bilingual.multilingual[{self.bilingual.routes.index(name)}].embedder"
            kind, options = split_block(block, where)
            cls = embedder_class(kind)
            self._embedder_specs[key] = (cls, validate_options(cls, options, where))
        return self._embedder_specs[key]

    def store_spec(self) -> tuple[type[VectorStore], StoreOptions]:
        """The store's class and validated options, resolved once per config: the default place is
        ``data_dir/<type>``, relative paths are relative to this file's folder."""
        if self._store_spec is None:
            kind, raw = split_block(self.store, "store")
            if self.search.mode != "dense":
                if raw.get("lexical") is False:
                    raise ConfigError(
                        f"search.mode {self.search.mode!r} needs the store's lexical index: drop "
                        "`lexical: false` from the store block"
                    )
                raw = {**raw, "lexical": True}
            cls, opts = resolve_store({"type": kind, **raw}, self._base_dir)
            if "path" in cls.Options.model_fields and not raw.get("path") and not opts.remote:
                default = str(Path(self.data_dir) / kind.replace(".", "_").replace(":", "_"))
                cls, opts = resolve_store({"type": kind, **raw, "path": default}, self._base_dir)
            self._store_spec = (cls, opts)
        return self._store_spec

    def store_block(self) -> dict[str, Any]:
        """The store block with its default path filled in and made absolute."""
        return store_block(str(self.store["type"]), self.store_spec()[1])

    def multilingual_store_spec(self, route: str | None = None) -> tuple[type[VectorStore], StoreOptions] | None:
        """A route's index (default: the first route's): as configured, else the main store's sibling
        (``<path>-ml``, or on a server the collection/table ``<name>_ml``; ``ml_<route>`` for the second and
        later routes)."""
        if not self.bilingual.routes:
            return None
        name = self._route_name(route, True)
        assert name is not None
        if name not in self._ml_store_specs:
            ml = self.bilingual.route(name)
            if ml.store is not None:
                self._ml_store_specs[name] = resolve_store(ml.store, self._base_dir)
            else:
                cls, opts = self.store_spec()
                tag = "ml" if name == self.bilingual.routes[0] else f"ml_{name}"
                sibling = opts.sibling(tag)
                sibling.lexical = False  # the lexical leg reads the main store's index only
                self._ml_store_specs[name] = (cls, sibling)
        return self._ml_store_specs[name]

    def validate_blocks(self) -> None:
        """Resolve every class and validate every option block once (fails fast, naming the key)."""
        self.embedder_spec()
        self.store_spec()
        for name in self.bilingual.routes:
            self.embedder_spec(route=name)
            self.multilingual_store_spec(name)
        if self.bilingual.mode in ("route", "both") and not self.bilingual.routes:
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


def read_file(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML or TOML file as a mapping; every problem is a ``ConfigError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        kind = path.suffix.lstrip(".").upper() if path.suffix == ".toml" else "YAML"
        raise ConfigError(f"{what} {path} is not valid {kind}: {_parse_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return data


def _parse_problem(exc: Exception) -> str:
    """One line a person reads: what the parser found and where (not its multi-line dump)."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"{problem}{f' ({context})' if context else ''} at {where}"
    return " ".join(str(exc).split())


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``overrides`` (e.g. command-line flags) laid over ``base``: mappings merge key by key, anything else
    replaces; ``None`` removes the key, so the field takes its default."""
    out = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def find_config(start: Path | None = None) -> Path | None:
    """``$RAGSTORE_CONFIG``, else ``ragstore.yaml|yml|toml`` in the current folder, else None."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    folder = start or Path.cwd()
    return next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)


def read_mapping(source: str | os.PathLike[str] | Mapping[str, Any] | None, what: str) -> tuple[Any, Path, str]:
    """(data, folder relative paths resolve against, " in <file>" for messages) from a file or a dict."""
    if source is None:
        return {}, Path.cwd(), ""
    if isinstance(source, Mapping):
        return dict(source), Path.cwd(), ""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    return read_file(path, what), path.resolve().parent, f" in {path}"


class FileConfig(BaseModel):
    """A config read from a YAML file (or a dict) whose relative paths resolve against the file's folder."""

    model_config = ConfigDict(extra="forbid")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    def resolve_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return (path if path.is_absolute() else self._base_dir / path).resolve()

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | None,
        what: str,
        overrides: Mapping[str, Any] | None = None,
    ) -> Self:
        """Read, lay ``overrides`` (command-line flags) over the file, and validate once; every problem is a
        ``ConfigError`` naming the key, before any work."""
        data, base, origin = read_mapping(source, what)
        try:
            config = cls.model_validate(interpolate(merge(data, overrides)))
        except PydanticValidationError as exc:
            raise ConfigError(f"invalid {what}{origin}: " + describe_problems(exc)) from None
        config._base_dir = base
        return config


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | RagstoreConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RagstoreConfig:
    """Load and validate a config from a file, a mapping, or the default locations (``overrides`` laid over
    it, as ``merge`` says); store, embedder and translator options are all checked here."""
    if isinstance(source, RagstoreConfig):
        if not overrides:
            return source
        data = merge(source.model_dump(exclude_unset=True), overrides)
        base_dir, origin = source.base_dir, source.source
    else:
        if source is None:
            found = find_config()
            if found is not None and not found.is_file():
                raise ConfigError(f"config file {found} does not exist")
            source = found
        raw, base_dir, where = read_mapping(source, "config file")
        origin = str(source) if where else None
        data = merge(raw, overrides)
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
