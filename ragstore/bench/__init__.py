"""``ragstore bench``: retrieval quality and speed for every backend and embedder, side by side, in one run.

``config`` (what to measure) -> ``runner`` (plan: every check up front; run: embed once per embedder, then
every store on the same vectors) -> ``report`` (table, JSON, Markdown, CSV, plots, compare). ``measure``
holds the timing and memory helpers, ``paths`` the query paths, ``hub`` the online dataset loader.
"""

from __future__ import annotations

from .config import BenchConfig, load_bench_config
from .runner import Plan, plan, run_bench

__all__ = ["BenchConfig", "Plan", "load_bench_config", "plan", "run_bench"]
