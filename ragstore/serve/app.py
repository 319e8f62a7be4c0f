"""The HTTP service: one FastAPI app over one ``Ragstore`` (the config's embedder, store, bilingual and
hybrid settings).

Routes: ``POST /v1/embeddings`` (OpenAI-compatible, plus ``input_type``), ``POST /v1/search``,
``POST /v1/explain``, ``POST|DELETE /v1/documents``, ``GET /v1/documents/{id}``, ``GET /v1/models``, ``GET /v1/info``,
``/healthz``, ``/readyz``, ``/metrics`` (Prometheus), OpenAPI docs at ``/docs``. Errors are OpenAI-style JSON bodies
(``{"error": {"message", "type", "param", "code"}}``) with a 4xx status naming the problem; no traceback
ever leaves the process.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import RagstoreConfig, ServeConfig
from ..errors import (
    BackendUnavailableError,
    ConfigError,
    EngineError,
    RagstoreError,
    UnsupportedFeatureError,
    ValidationError,
)
from ..pipeline import Ragstore
from ..types import Document, Hit, check_text_chars
from .batching import Batcher, QueueFullError
from .keys import ANONYMOUS, Grant, find, grants
from .metrics import Metrics

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ------------------------------------------------------------------------------------------- bodies
class _Body(BaseModel):
    # strict: ``"k": "5"`` or ``"k": true`` is refused (422 naming the field), not read as 5 or 1
    model_config = ConfigDict(extra="forbid", strict=True)


NAMESPACE_FIELD = Field(
    default=None, description="the tenant (default: the key's one namespace, or the default namespace)"
)


class EmbeddingsRequest(_Body):
    input: str | list[str]
    model: str | None = Field(default=None, description="required: the served model (GET /v1/models)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    input_type: Literal["query", "passage"] = Field(
        default="passage", description="query or passage: E5/BGE prefixes (NVIDIA NIM's field)"
    )
    user: str | None = None
    namespace: str | None = NAMESPACE_FIELD


class ExplainRequest(_Body):
    k: int | None = Field(default=None, gt=0, le=1000, description="default: the config's search.k")
    filter: dict[str, Any] | None = None
    namespace: str | None = NAMESPACE_FIELD


class SearchRequest(_Body):
    query: str | None = Field(default=None, description="text; or give vector")
    vector: list[float] | None = None
    k: int | None = Field(default=None, gt=0, le=1000, description="default (left out): the config's search.k")
    filter: dict[str, Any] | None = None
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(default=None, description="default: the config's")
    bilingual: Literal["off", "translate", "route", "both", "auto"] | None = None
    alpha: float | None = Field(default=None, ge=0, le=1, description="hybrid: alpha fusion, share of dense")
    namespace: str | None = NAMESPACE_FIELD

    @field_validator("k", mode="before")
    @classmethod
    def _k_given_is_an_integer(cls, value: Any) -> Any:
        if value is None:  # only an explicit null reaches here: leaving k out takes the config's search.k
            raise ValueError("k must be an integer (leave it out for the config's search.k)")
        return value


class DocumentIn(_Body):
    id: str | None = None
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] | None = None


class DocumentsRequest(_Body):
    documents: list[DocumentIn]
    namespace: str | None = NAMESPACE_FIELD


class DeleteRequest(_Body):
    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    namespace: str | None = NAMESPACE_FIELD


# ------------------------------------------------------------------------------------------- errors
class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.extra = status, message, kind, extra


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": extra.get("param"), "code": extra.get("code")}}
    return JSONResponse(body, status_code=status, headers=headers)


def _status_of(exc: RagstoreError) -> tuple[int, str]:
    if isinstance(exc, QueueFullError):
        return 503, "server_overloaded"
    if isinstance(exc, ValidationError | ConfigError | UnsupportedFeatureError):
        return 400, "invalid_request_error"
    if isinstance(exc, EngineError):  # the engine failed on this call: not "unavailable", nothing to retry after
        return 500, "server_error"
    if isinstance(exc, BackendUnavailableError):
        return 503, "service_unavailable"
    return 500, "server_error"


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _error(413, f"request body over {self.limit} bytes", "invalid_request_error")(scope, receive, send)
            return
        # read the body here, before any route parses it: a chunked body (no declared length) over the limit
        # gets the same 413 in the same shape, instead of a parser's 400
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees the same
                chunks, more = [], False
                first: Message = message
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await _error(413, f"request body over {self.limit} bytes", "invalid_request_error")(
                    scope, receive, send
                )
                return
            chunks.append(body)
            more = bool(message.get("more_body", False))
        else:
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


class Guard:
    """API keys on ``/v1/*`` and ``/metrics`` (probes stay open), and request metrics by route template
    (a plain ASGI middleware: no extra task or body copy per request)."""

    def __init__(self, app: ASGIApp, keys: list[Grant], metrics: Metrics) -> None:
        self.app, self.keys, self.metrics = app, keys, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        grant = _grant(scope, self.keys) if self.keys else ANONYMOUS
        scope.setdefault("state", {})["grant"] = grant
        if grant is None and scope["path"].startswith(("/v1/", "/metrics")):
            message = "missing or wrong API key (Authorization: Bearer <key>)"
            await _error(401, message, "authentication_error")(scope, receive, sending)
        else:
            try:
                await self.app(scope, receive, sending)
            except ApiError as exc:  # a body over the limit, found while reading it
                await _error(exc.status, exc.message, exc.kind)(scope, receive, sending)
        # the route template, never the raw path: unknown paths must not grow the label set
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        who = grant.name if grant is not None else "unknown"
        self.metrics.observe(scope["method"], route, status, time.perf_counter() - start, who)


# ------------------------------------------------------------------------------------------- app
def api_keys(settings: ServeConfig) -> list[Grant]:
    """Keys from the config and ``$RAGSTORE_API_KEYS`` (comma-separated), each with what it opens."""
    return grants(settings)


def scoped(request: Request, need: str) -> Grant:
    """The request's key, once it may ``need`` (read, write, admin); else 403 in OpenAI's error shape. Routes
    that touch no namespace's documents (models, info, metrics) ask only this."""
    grant: Grant | None = request.scope.get("state", {}).get("grant")
    if grant is None:  # pragma: no cover - the guard answered 401 already
        raise ApiError(401, "missing or wrong API key", "authentication_error")
    if need not in grant.scopes:
        raise ApiError(
            403,
            f"key {grant.name!r} may not {need} (scopes: {', '.join(sorted(grant.scopes))})",
            "permission_error",
            code="forbidden",
        )
    return grant


def allowed(request: Request, need: str, asked: str | None) -> str | None:
    """The namespace a request works in, once its key may ``need`` there: the one it names, else the key's
    only one. Anything else is 403 (400 for a key with several and none named), before any read or write."""
    grant = scoped(request, need)
    if grant.namespaces is None:
        return asked
    if asked is None:
        if len(grant.namespaces) == 1:
            return next(iter(grant.namespaces))
        raise ApiError(400, f"key {grant.name!r} opens several namespaces: name one (namespace)", param="namespace")
    if asked not in grant.namespaces:
        raise ApiError(
            403,
            f"key {grant.name!r} may not open namespace {asked!r}",
            "permission_error",
            param="namespace",
            code="forbidden",
        )
    return asked


def check_binding(host: str, keys: list[Grant]) -> None:
    if host not in LOOPBACK and not keys:
        raise ConfigError(
            f"serving on {host} needs an API key: pass --api-key KEY (repeatable), set serve.api_keys (e.g. "
            "${RAGSTORE_KEY}) or RAGSTORE_API_KEYS; without keys ragstore serve binds to 127.0.0.1 only"
        )


def create_app(config: RagstoreConfig, *, host: str = "127.0.0.1", pipeline: Ragstore | None = None) -> FastAPI:
    """The app for ``config``: the pipeline (``pipeline``, or opened at startup) closes at shutdown, after
    in-flight requests have finished (uvicorn drains them on SIGTERM). Opening it before the server starts,
    as ``ragstore serve`` does, turns a store another process holds into a clear error, not a failed start."""
    settings = config.serve
    keys = api_keys(settings)
    check_binding(host, keys)
    metrics = Metrics()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rs = pipeline if pipeline is not None else await run_in_threadpool(Ragstore, config)
        batcher = Batcher(
            rs.embedder,
            max_batch=settings.max_batch,
            max_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            on_batch=metrics.batch_size.observe,
        )
        batcher.start()
        await batcher.embed(["ready"], "passage")  # the model is loaded before the first request
        state.update(rs=rs, batcher=batcher, ready=True)
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop()
            await run_in_threadpool(rs.close)

    app = FastAPI(
        title="ragstore",
        summary="Embeddings (OpenAI-compatible), search and documents over one ragstore config",
        lifespan=lifespan,
    )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Guard, keys=keys, metrics=metrics)  # outermost: keys first, every response counted

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message = "request body is not valid JSON"
        return _error(400, f"{where}: {message}" if where else message, "invalid_request_error", param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes, wrong methods and bodies no parser could read: the same error shape as the rest."""
        messages = {
            404: f"no route {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = messages.get(exc.status_code) or str(exc.detail)
        return _error(exc.status_code, message, kind, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind, **exc.extra)

    @app.exception_handler(RagstoreError)
    async def ragstore_error(_request: Request, exc: RagstoreError) -> JSONResponse:
        status, kind = _status_of(exc)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFullError) else None
        return _error(status, f"{type(exc).__name__}: {exc}", kind, headers)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal server error", "server_error")  # the traceback stays in the log

    def current() -> Ragstore:
        if not state.get("ready"):
            raise ApiError(503, "the server is starting or stopping", "service_unavailable")
        return state["rs"]

    async def embed(texts: list[str], kind: Literal["query", "passage"]) -> np.ndarray:
        if len(texts) > settings.max_inputs:
            raise ApiError(400, f"{len(texts)} inputs; at most {settings.max_inputs} per request")
        for pos, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, f"input {pos} is empty")
            if len(text) > settings.max_input_chars:
                raise ApiError(400, f"input {pos} has {len(text)} characters; at most {settings.max_input_chars}")
            try:  # before it joins a batch: one bad text must not fail the other requests sharing the model call
                check_text_chars(text, f"input {pos}")
            except ValidationError as exc:
                raise ApiError(400, str(exc), param="input") from None
        current()
        batcher: Batcher = state["batcher"]
        metrics.queue_depth.set(batcher.waiting)
        return await batcher.embed(texts, kind)

    # ------------------------------------------------------------------ routes
    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> JSONResponse:
        allowed(request, "read", body.namespace)
        rs = current()
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise ApiError(400, "input is an empty list", param="input")
        name = model_name(rs)
        if not body.model:
            raise ApiError(
                400,
                f"model is required, as in OpenAI's API: this server serves {name!r} (GET /v1/models)",
                param="model",
                code="missing_model",
            )
        if not _known_model(rs, body.model):
            raise ApiError(
                404, f"model {body.model!r} is not served here; this server serves {name!r}", code="model_not_found"
            )
        vectors = await embed(texts, body.input_type)
        if body.dimensions is not None:
            if body.dimensions > vectors.shape[1]:
                raise ApiError(
                    400, f"dimensions={body.dimensions} exceeds the model's {vectors.shape[1]}", param="dimensions"
                )
            vectors = vectors[:, : body.dimensions]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(_tokens(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )  # a Response: no per-float re-encoding by FastAPI

    @app.post("/v1/search")
    async def search(body: SearchRequest, request: Request) -> dict[str, Any]:
        ns = allowed(request, "read", body.namespace)
        rs = current()
        if (body.query is None) == (body.vector is None):
            raise ApiError(400, "give exactly one of query (text) or vector")
        spec = await run_in_threadpool(
            lambda: rs.retriever.resolve(
                body.k if body.k is not None else rs.config.search.k,
                body.filter,
                bilingual=body.bilingual,
                search=body.mode,
                alpha=body.alpha,
                limits=rs.store.options.filter_limits,
                namespace=ns,
            )
        )
        if body.vector is not None:
            if body.mode not in (None, "dense"):
                raise ApiError(400, f"mode {body.mode!r} needs the query text, not a vector")
            hits = await run_in_threadpool(
                lambda: rs.store.search(body.vector, spec.k, spec.filter, namespace=spec.namespace)
            )
            return {"hits": [_hit(h) for h in hits], "plan": None}
        query = body.query or ""
        plans = await run_in_threadpool(rs.retriever.plan, [query], spec.bilingual)
        vectors = await embed([plans[0].text], "query") if plans[0].searches_main else None
        results = await run_in_threadpool(lambda: rs.retriever.answer(rs.store, [query], spec, vectors=vectors))
        return {"hits": [_hit(h) for h in results[0].hits], "plan": results[0].plan.as_dict()}

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        """How the store would run a search with this filter (declared fields, pre-filter or filtered ANN)."""
        ns = allowed(request, "read", body.namespace)
        rs = current()
        return await run_in_threadpool(lambda: rs.explain(body.filter, body.k, namespace=ns))

    @app.post("/v1/documents")
    async def upsert(body: DocumentsRequest, request: Request) -> dict[str, Any]:
        ns = allowed(request, "write", body.namespace)
        rs = current()
        await run_in_threadpool(rs.store.primary.scoped_filter, None, ns)  # a bad namespace: before embedding
        if not body.documents:
            raise ApiError(400, "documents is an empty list", param="documents")
        if len(body.documents) > settings.max_inputs:
            raise ApiError(400, f"{len(body.documents)} documents; at most {settings.max_inputs} per request")
        docs = [
            Document(
                text=d.text,
                id=d.id or "",
                metadata=dict(d.metadata),
                vector=None if d.vector is None else np.asarray(d.vector, dtype=np.float32),
            )
            for d in body.documents
        ]
        todo = [d for d in docs if d.vector is None]
        if todo:
            for doc, vec in zip(todo, await embed([d.text for d in todo], "passage"), strict=True):
                doc.vector = vec
        ids = await run_in_threadpool(_write, rs, docs, ns)
        return {"ids": ids, "count": len(ids)}

    @app.get("/v1/documents/{doc_id:path}")
    async def get_document(doc_id: str, request: Request, namespace: str | None = None) -> dict[str, Any]:
        ns = allowed(request, "read", namespace)
        rs = current()
        found = await run_in_threadpool(lambda: rs.get([doc_id], namespace=ns))
        if not found:
            raise ApiError(404, f"no document {doc_id!r}", code="not_found")
        d = found[0]
        return {"id": d.id, "text": d.text, "metadata": d.metadata}

    @app.delete("/v1/documents")
    async def delete(body: DeleteRequest, request: Request) -> dict[str, Any]:
        ns = allowed(request, "write", body.namespace)
        rs = current()
        if (body.ids is None) == (body.filter is None):
            raise ApiError(400, "give exactly one of ids or filter")
        removed = await run_in_threadpool(lambda: _delete(rs, body.ids, body.filter, ns))
        return {"deleted": removed}

    def _model_card(rs: Ragstore) -> dict[str, Any]:
        return {"id": model_name(rs), "object": "model", "created": 0, "owned_by": "ragstore"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """OpenAI's model list (the ``openai`` client's ``models.list()``): the one model this server embeds with."""
        scoped(request, "read")
        return {"object": "list", "data": [_model_card(current())]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        scoped(request, "read")
        rs = current()
        if not _known_model(rs, model_id) or not model_id:
            raise ApiError(
                404,
                f"model {model_id!r} is not served here; this server serves {model_name(rs)!r}",
                "not_found_error",
                code="model_not_found",
            )
        return _model_card(rs)

    @app.get("/v1/info")
    async def info(request: Request) -> dict[str, Any]:
        """Every namespace's counts: an admin key's."""
        scoped(request, "admin")
        rs = current()
        out = await run_in_threadpool(rs.info)
        out.pop("config", None)  # a file path of the server's machine
        out.pop("data_dir", None)
        out["model"] = model_name(rs)
        return out

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if not state.get("ready"):
            return JSONResponse({"status": "starting"}, status_code=503)
        try:  # the store answers; how many documents it holds is for /v1/info, behind the keys
            await run_in_threadpool(state["rs"].store.count)
        except RagstoreError as exc:
            return JSONResponse({"status": "store unreachable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def prometheus(request: Request) -> PlainTextResponse:
        scoped(request, "admin")
        if state.get("batcher") is not None:
            metrics.queue_depth.set(state["batcher"].waiting)
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return app


def _grant(scope: Scope, keys: list[Grant]) -> Grant | None:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return find(keys, token.strip())


def model_name(rs: Ragstore) -> str:
    """What clients name the served model: the config's ``model`` (a hub name or folder), else its ``type``."""
    block = rs.config.embedder
    return str(block.get("model") or block.get("type") or rs.embedder.fingerprint)


def _known_model(rs: Ragstore, asked: str | None) -> bool:
    """The served model by any of its spellings: its config name, its fingerprint, a folder's base name."""
    name = model_name(rs)
    return bool(asked) and asked in (name, rs.embedder.fingerprint, os.path.basename(name.rstrip("/")))


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":  # OpenAI's: little-endian float32 bytes
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return list(np.asarray(vector, dtype=np.float64).tolist())


def _tokens(text: str) -> int:
    return max(len(text.split()), 1)


def _hit(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "score": hit.score, "scale": hit.scale, "text": hit.text, "metadata": hit.metadata}


def _write(rs: Ragstore, docs: list[Document], namespace: str | None = None) -> list[str]:
    """Upsert, then make it durable before the 200 (stores whose writes wait for a save are flushed)."""
    ids = rs.add(docs, namespace=namespace)
    if not rs.store.capabilities.durable_writes:
        rs.store.flush()
    return ids


def _delete(rs: Ragstore, ids: list[str] | None, where: dict[str, Any] | None, namespace: str | None = None) -> int:
    removed = rs.delete(ids, filter=where, namespace=namespace)
    if not rs.store.capabilities.durable_writes:
        rs.store.flush()
    return removed


__all__ = ["api_keys", "check_binding", "create_app", "model_name"]
