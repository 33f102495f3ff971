"""Certification: randomized smoothing (probabilistic) and IBP/CROWN bounds (deterministic)."""
