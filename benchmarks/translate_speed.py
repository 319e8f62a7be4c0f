"""Dictionary translator throughput (target >= 500 queries/s): xquad-r's Chinese questions, one batch.

python -P benchmarks/translate_speed.py [--xquad FOLDER]  (default: the bundled xquad-r)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ragstore.bilingual import DictionaryTranslator
from ragstore.data.beir import bundled_dataset, load_beir

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--xquad", type=Path, default=bundled_dataset("xquad-r"))
    args = parser.parse_args()
    texts = list(load_beir(args.xquad, query_lang="zh", corpus_langs="en").queries.values())
    start = time.perf_counter()
    translator = DictionaryTranslator()
    translator.translate(texts[:1])
    load = time.perf_counter() - start
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        translator.translate(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    print(f"{len(texts)} questions; dictionary + jieba load {load:.1f} s; best of 3: {max(rates):,.0f} questions/s")


if __name__ == "__main__":
    main()
