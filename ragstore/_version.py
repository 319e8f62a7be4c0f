"""The version, in one place below every layer (the package and the command line both read it)."""

__version__ = "0.1.0"
