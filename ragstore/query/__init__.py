"""The query side: the filter grammar (``filters``), rank and score fusion (``fusion``), and the one query
path every door uses (``retrieval``)."""
