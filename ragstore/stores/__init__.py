"""Stores: the interface adapters implement (``base``), the collection that owns a store's derived indexes
(``collection``), and the registry that names stores and embedders (``registry``)."""
