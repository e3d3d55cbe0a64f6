"""Benchmarks: `python -m bench.run` (serving throughput), `python -m bench.gallery_bench` (gallery index)."""
