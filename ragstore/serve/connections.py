"""Connection limits: a flood of idle or slow clients must not starve health checks or real requests.

uvicorn never closes a connection that has sent nothing (or only part of its headers), and 1,100 idle
connections under the default ``ulimit -n 1024`` left the server unable to accept anyone. Three rules, all
from ``serve`` config:

- ``header_timeout_s``: a connection must finish a request's headers within this time of opening (or of
  its previous response); otherwise it is closed (slowloris, idle sockets);
- ``max_connections``: past this many open connections, each new one evicts the connection that has been
  idle longest (no request in progress), so the newest caller is served; busy connections are never cut;
- ``keepalive_timeout_s``: uvicorn's keep-alive timeout after a response.

``max_connections`` is clamped below the process's file-descriptor limit (its soft limit is raised to the
hard one first), so the server never reaches ``EMFILE``, where asyncio stops accepting for a second at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from typing import Any

from ..config import ServeConfig

log = logging.getLogger("ragstore.serve")
_FD_RESERVE = 128  # descriptors kept for the model, the store's files and the engine's sockets


def fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (as far as allowed); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65_536 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(settings: ServeConfig) -> int:
    """``max_connections``, lowered to what the descriptor limit allows (said in the log when lowered)."""
    room = max(fd_limit() - _FD_RESERVE, 16)
    if settings.max_connections > room:
        log.warning("serve.max_connections %d lowered to %d (file descriptor limit)", settings.max_connections, room)
        return room
    return settings.max_connections


def _base_protocol() -> type[Any]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def guarded_protocol(header_timeout: float, max_connections: int) -> type[Any]:
    """uvicorn's HTTP protocol with the header deadline and idle eviction described above."""
    base = _base_protocol()

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._rs_timer: asyncio.TimerHandle | None = None
            self._rs_idle_since = self.loop.time()
            self._rs_arm()
            if len(self.connections) > max_connections:
                self._rs_evict()

        def _rs_idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _rs_cancel(self) -> None:
            if self._rs_timer is not None:
                self._rs_timer.cancel()
                self._rs_timer = None

        def _rs_arm(self) -> None:
            self._rs_cancel()
            self._rs_timer = self.loop.call_later(header_timeout, self._rs_expire)

        def _rs_expire(self) -> None:
            # a request under way (headers complete) is never cut: the deadline only closes a connection
            # still waiting for headers, so it works the same on uvicorn's httptools and h11 protocols
            self._rs_timer = None
            if self._rs_idle() and not self.transport.is_closing():
                self.transport.close()

        def _rs_evict(self) -> None:
            idle = [c for c in self.connections if c is not self and getattr(c, "_rs_idle", lambda: False)()]
            if idle:
                oldest = min(idle, key=lambda c: c._rs_idle_since)
                oldest.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._rs_idle_since = self.loop.time()
            if not self.transport.is_closing():
                self._rs_arm()  # the next request's headers have the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._rs_cancel()
            super().connection_lost(exc)

    return GuardedProtocol


def uvicorn_config(app: Any, settings: ServeConfig, host: str, port: int, **extra: Any) -> Any:
    """The one place a ``uvicorn.Config`` is made (the CLI and the tests): limits from ``settings``."""
    import uvicorn

    cap = connection_cap(settings)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(settings.header_timeout_s, cap),
        timeout_keep_alive=int(max(1, round(settings.keepalive_timeout_s))),
        backlog=max(2048, cap),
        **extra,
    )


__all__ = ["connection_cap", "fd_limit", "guarded_protocol", "uvicorn_config"]
