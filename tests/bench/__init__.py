"""Benchmark scripts (not tests): run each as `python -m tests.bench.<name>`; each prints one JSON document."""
