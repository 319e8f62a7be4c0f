"""ragstore embedders and stores inside LlamaIndex and LangChain apps (extras ``llamaindex``, ``langchain``).

``llamaindex``: :class:`~ragstore.integrations.llamaindex.RagstoreEmbedding` (a ``BaseEmbedding``) and
:class:`~ragstore.integrations.llamaindex.RagstoreVectorStore` (a ``BasePydanticVectorStore``).
``langchain``: :class:`~ragstore.integrations.langchain.RagstoreEmbeddings` (``Embeddings``) and
:class:`~ragstore.integrations.langchain.RagstoreVectorStore` (``VectorStore``). ``common`` holds what both
share: turning a config block, model name or instance into an embedder or store, the bilingual query text,
and metadata that survives the engines' scalar-only fields. Nothing here is imported by ``import ragstore``.
"""
