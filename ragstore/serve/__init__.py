"""``ragstore serve``: embeddings (OpenAI-compatible), search and documents over HTTP (FastAPI + uvicorn).

Install with ``pip install 'ragstore[serve]'``; imported only by the ``serve`` command, never by
``import ragstore``.
"""

from .app import api_keys, check_binding, create_app

__all__ = ["api_keys", "check_binding", "create_app"]
