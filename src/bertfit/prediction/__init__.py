"""Classifier, streaming prediction into resumable parts, and the Ray engine."""
