"""Embedders: the interface and its implementations. Heavy ones (torch) load only when used."""

from .base import Embedder, EmbedderOptions, check_texts

__all__ = ["Embedder", "EmbedderOptions", "check_texts"]
