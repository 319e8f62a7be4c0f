"""Which language a query is in, by script: robust on three-word questions where statistical detectors guess.

Han characters (simplified and traditional alike) make a query Chinese; Han mixed with Latin words
("SuperStream 缴款截止日期是什么？") is ``mixed``, which the translate path treats as Chinese while keeping the
Latin words. Kana or Hangul mean Japanese or Korean, which a Chinese dictionary must not gloss (``other``).
Digits, punctuation and emoji carry no language; a query of only those is ``none``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

Language = Literal["zh", "en", "mixed", "other", "none"]


def is_han(ch: str) -> bool:
    """CJK ideographs: unified, extension A-F, compatibility (simplified and traditional alike)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x2FA1F
        or cp == 0x3007  # 〇
    )


@dataclass(frozen=True)
class ScriptCounts:
    han: int = 0
    latin: int = 0
    kana_hangul: int = 0
    other: int = 0  # letters of any other script (Cyrillic, Arabic, Thai...)

    @property
    def letters(self) -> int:
        return self.han + self.latin + self.kana_hangul + self.other


def count_scripts(text: str) -> ScriptCounts:
    han = latin = kana = other = 0
    for ch in text:
        if is_han(ch):
            han += 1
        elif ch.isalpha():
            name = unicodedata.name(ch, "")
            if name.startswith("LATIN"):
                latin += 1
            elif name.startswith(("HIRAGANA", "KATAKANA", "HANGUL")):
                kana += 1
            else:
                other += 1
    return ScriptCounts(han, latin, kana, other)


def detect_language(text: str) -> Language:
    """``zh``, ``en``, ``mixed`` (Han and Latin), ``other`` (another script) or ``none`` (no letters)."""
    c = count_scripts(text)
    if c.letters == 0:
        return "none"
    if c.kana_hangul or c.other > c.han + c.latin:
        return "other"
    if c.han and c.latin:
        return "mixed"
    if c.han:
        return "zh"
    return "en"


def is_chinese(text: str) -> bool:
    """True for queries the Chinese paths should handle (Chinese or Chinese mixed with Latin words)."""
    return detect_language(text) in ("zh", "mixed")


def detect_script(text: str) -> str:
    """The script a query is written in, for reports: Han, Latin, Japanese (kana), Korean (Hangul), or the
    Unicode name of the most common other script (Arabic, Cyrillic, Thai...); ``none`` without letters."""
    counts: dict[str, int] = {}
    for ch in text:
        if is_han(ch):
            script = "Han"
        elif ch.isalpha():
            name = unicodedata.name(ch, "UNKNOWN")
            if name.startswith(("HIRAGANA", "KATAKANA")):
                script = "Japanese (kana)"
            elif name.startswith("HANGUL"):
                script = "Korean (Hangul)"
            else:
                script = name.split(" ", 1)[0].title()
        else:
            continue
        counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "none"
    for marked in ("Japanese (kana)", "Korean (Hangul)"):
        if marked in counts:
            return marked
    return max(counts, key=lambda s: (counts[s], s))
