"""Evaluation: IR metrics (pytrec_eval)."""
