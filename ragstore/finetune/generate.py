"""Training questions written by an OpenAI-compatible LLM for passages that have none (off by default).

Only passages on the training side of the split are sent, so no held-out passage is ever seen in training.
"""

from __future__ import annotations

import re
from typing import Any

from tqdm.auto import tqdm

from ..bilingual.translate import LLMTranslator
from ..errors import ConfigError

PROMPT = (
    "You write search questions for a retrieval training set. Given a passage, write {n} different questions "
    "that the passage answers, in {language}. One question per line, no numbering, nothing else."
)
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def generate_pairs(
    passages: list[str], options: dict[str, Any], progress: bool = True
) -> tuple[list[tuple[str, str]], int]:
    """((question, passage) pairs, passages that produced no usable question); ``data`` turns them into
    training pairs, so this module depends on nothing of the training data's types."""
    opts = dict(options)
    try:
        per = int(opts.pop("per_passage", 2))
        limit = opts.pop("max_passages", None)
        language = str(opts.pop("language", "English"))
        client = LLMTranslator(
            opts.pop("base_url"),
            opts.pop("model"),
            system_prompt=PROMPT.format(n=per, language=language),
            fallback=None,
            **opts,
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"data.generate needs base_url and model and accepts per_passage, max_passages, "
            f"language, api_key, timeout, retries: {exc}"
        ) from None
    pairs: list[tuple[str, str]] = []
    failed = 0
    todo = passages[: int(limit)] if limit else passages
    try:
        for passage in tqdm(todo, desc="writing questions", unit="passage", disable=not progress):
            lines = [_NUMBERING.sub("", line).strip() for line in client.complete(passage).splitlines()]
            questions = [q for q in dict.fromkeys(lines) if q and q != passage][:per]
            failed += not questions
            pairs += [(q, passage) for q in questions]
    finally:
        client.close()
    return pairs, failed
