"""Evaluation protocols: retrieval, zero-shot classification, localization, bootstrap."""
