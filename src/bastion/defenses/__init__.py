"""Defenses: training procedures, preprocessors, detectors."""
