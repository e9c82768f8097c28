"""Benchmark scripts; each writes figures to benchmarks/results/<name>.json."""
