"""Point a ragstore config at a fine-tuned model and rebuild its store, with search working throughout.

The new vectors go into a *new* store (its own folder, collection or table) beside the old one; the config
file is rewritten only once that store is complete, so until then every reader keeps using the old store
and model. The old store is left in place (its location is returned) for the user to remove.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..config import load_config
from ..errors import ConfigError
from ..registry import create_embedder, store_block
from ..types import Document
from .run import RESULT_FILE


@dataclass
class SwitchReport:
    config: Path
    model: Path
    documents: int
    old_store: dict[str, Any]
    new_store: dict[str, Any]
    backup: Path


def update_config(
    config_file: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
) -> SwitchReport:
    """Re-embed every stored document with the model in ``model_dir`` into a new store, then rewrite the
    config (a ``.bak`` copy is kept). Refuses a model whose held-out score fell, unless ``force``."""
    path, folder = Path(config_file), Path(model_dir).resolve()
    if not path.is_file():
        raise ConfigError(f"--update-config needs an existing config file, {path} is not one")
    record_file = folder / RESULT_FILE
    if not record_file.is_file():
        raise ConfigError(f"{folder} has no {RESULT_FILE}: not a ragstore finetune output")
    record = json.loads(record_file.read_text(encoding="utf-8"))
    if not record.get("marked") and not force:
        raise ConfigError(
            f"the model in {folder} scored worse than its base on held-out queries "
            f"(nDCG@10 {record.get('gain_ndcg10', 0):+.4f}); not switching. Pass --force to switch anyway."
        )
    cfg = load_config(path)
    cls, old_opts = cfg.store_spec()
    new_opts = old_opts.sibling("ft" + datetime.now().strftime("%Y%m%d%H%M%S"))  # its own folder or collection
    kind = str(cfg.store["type"])
    old_block, new_block = store_block(kind, old_opts), store_block(kind, new_opts)
    emb_block = {k: v for k, v in cfg.embedder.items() if k not in ("query_prefix", "passage_prefix", "prompt_style")}
    emb_block.update(type="sentence-transformers", model=str(folder))
    embedder = create_embedder(emb_block)
    old = cls(old_opts)
    new = cls(new_opts)
    try:
        docs = old.get(filter=None) if old.count() else []
        step = cfg.ingest.batch_size
        with tqdm(total=len(docs), desc="re-embedding", unit="doc", disable=not progress) as bar:
            for start in range(0, len(docs), step):
                part = docs[start : start + step]
                vecs = embedder.embed_documents([d.text for d in part])
                new.upsert(
                    [
                        Document(text=d.text, id=d.id, metadata=d.metadata, vector=v)
                        for d, v in zip(part, vecs, strict=True)
                    ]
                )
                bar.update(len(part))
        if new.count() != len(docs):
            raise ConfigError(f"the new store holds {new.count()} documents, expected {len(docs)}; config unchanged")
    finally:
        old.close()
        new.close()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw["embedder"] = emb_block
    stored = dict(new_block)
    if "path" in stored and "path" not in cfg.store:  # keep a default location relative, as it was
        stored["path"] = os.path.relpath(stored["path"], cfg.base_dir)
    raw["store"] = stored
    backup = path.with_suffix(path.suffix + ".bak")
    backup.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)  # readers see the old config or the new one, never half of each
    return SwitchReport(path, folder, len(docs), old_block, new_block, backup)
