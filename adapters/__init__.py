"""Backend adapters, installed as ``ragstore.adapters`` (never as a top-level ``adapters`` package).

One module per engine. Each imports its engine's client lazily through :func:`ragstore._optional.require`,
so importing ``ragstore`` never pulls a backend client in.
"""
