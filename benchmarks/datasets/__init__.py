"""Bundled datasets in BEIR layout (shipped as ``ragstore.datasets``)."""
