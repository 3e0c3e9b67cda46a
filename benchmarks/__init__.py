"""Throughput benchmarks: ``python -m benchmarks.bench_<name>``."""
