"""Point a ragstore config at a fine-tuned model and rebuild its store, with search working throughout.

The new vectors go into a *new* store (its own folder, collection or table) beside the old one; the config
file is rewritten only once that store is complete, so until then every reader keeps using the old store
and model. The old store is left in place (its location is returned) for the user to remove.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..config import load_config
from ..errors import ConfigError
from ..secrets import redact
from ..stores.collection import open_collection
from ..stores.registry import create_embedder, store_block
from ..types import Document
from .run import RESULT_FILE

_PREFIX_KEYS = ("query_prefix", "passage_prefix", "prompt_style")


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
    emb_block = {k: v for k, v in cfg.embedder.items() if k not in _PREFIX_KEYS}
    emb_block.update(type="sentence-transformers", model=str(folder))
    embedder = create_embedder(emb_block)
    old = cls(old_opts)
    try:  # a collection: the new store's manifest records the fine-tuned model, its BM25 index is built too
        new = open_collection(cls(new_opts), embedder=embedder)
    except BaseException:
        old.close()
        raise
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
    backup = _rewrite(path, cfg, old_block, new_block, str(folder))
    return SwitchReport(path, folder, len(docs), redact(old_block), redact(new_block), backup)


def _rewrite(path: Path, cfg: Any, old_block: dict[str, Any], new_block: dict[str, Any], model: str) -> Path:
    """Rewrite the config from its own, unexpanded text: ``${VAR}`` references stay as written (an expanded
    password must never land in a file), only the model and what the new store changed (its folder,
    collection or table) are replaced, and the file keeps its mode (and the backup gets the same). Returns the
    backup's path."""
    text = path.read_text(encoding="utf-8")
    mode = stat.S_IMODE(path.stat().st_mode)
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} does not hold a mapping; config unchanged")
    emb = {k: v for k, v in (raw.get("embedder") or {}).items() if k not in _PREFIX_KEYS}
    emb.update(type="sentence-transformers", model=model)
    raw["embedder"] = emb
    stored = dict(raw.get("store") or {"type": new_block["type"]})
    for key, value in new_block.items():
        if old_block.get(key) != value:  # only what the sibling store changed; secrets are never among them
            stored[key] = value
    if "path" in stored and "path" not in (raw.get("store") or {}):  # keep a default location relative
        stored["path"] = os.path.relpath(stored["path"], cfg.base_dir)
    raw["store"] = stored
    backup, tmp = path.with_suffix(path.suffix + ".bak"), path.with_suffix(path.suffix + ".tmp")
    _write(backup, text, mode)
    _write(tmp, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), mode)
    tmp.replace(path)  # readers see the old config or the new one, never half of each
    return backup


def _write(path: Path, text: str, mode: int) -> None:
    """Create with the final mode from the start (never a moment readable by others), then write."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # the umask must not loosen or tighten what the original had
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
