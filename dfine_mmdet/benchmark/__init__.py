"""Benchmark and profiling helpers used by ``tools/benchmark/``."""
