"""Benchmarks, one run each, loopback only: `python -m bench.run` (serving throughput, `make
bench`), bench.soak (hours of mixed valid and hostile load), bench.rec_scaling (recognition across
processes and servers), bench.gallery_bench and bench.recall_bench (the gallery index), bench.openset_bench (open-set
recognition, served). What they
share with the tests (the server launcher, payloads, process stats, wrk, PaddleClas's reference)
is in harness/. Results are written under bench/results/."""
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
