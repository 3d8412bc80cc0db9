"""Inference: predict() -> results.json and batch-size tuning."""
