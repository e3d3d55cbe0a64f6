"""Gallery index benchmark: `python -m bench.gallery_bench`.

Random L2-normalised float32 vectors (100k x 512 by default), metric IP. For Flat, HNSW32 and
IVF: build (create + one add of every vector, which includes the fsync'd log write and IVF
training), add 1k more without rebuild, per-query search latency at k=5 for batch 1 and batch 32,
remove 100 by id, save (snapshot + log reset) and reopen. Queries are gallery vectors with a
little noise; top-1 accuracy is how often a query's best hit is the vector it was made from (on
random data the other neighbours are near-ties, so recall@5 would measure noise). Prints a table
and writes bench/results/gallery.json.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from clas_system.gallery import create_gallery, open_gallery

METHODS = {"Flat": {}, "HNSW32": {}, "IVF": {"nlist": 256}}
RESULTS = Path(__file__).resolve().parent / "results" / "gallery.json"
K = 5


def unit_rows(rng, count, dim):
    rows = rng.standard_normal((count, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def search_latency_ms(gallery, queries, batch):
    """Mean milliseconds per query when searching `batch` queries per call."""
    seconds, _ = timed(lambda: [gallery.search(queries[i:i + batch], K) for i in range(0, len(queries), batch)])
    return 1000 * seconds / len(queries)


def bench_method(directory, method, args, vectors, extra, queries):
    build_s, gallery = timed(lambda: _build(directory, method, args, vectors))
    add_s, _ = timed(lambda: gallery.add(extra, [f"extra {i}" for i in range(len(extra))]))
    batch1_ms = search_latency_ms(gallery, queries[:200], 1)
    batch32_ms = search_latency_ms(gallery, queries, 32)
    top_ids = [hits[0].id for hits in gallery.search(queries, K)]
    doomed = np.random.default_rng(1).choice(len(vectors), 100, replace=False).tolist()
    remove_s, removed = timed(lambda: gallery.remove(ids=doomed))
    assert removed == 100
    save_s, _ = timed(gallery.save)
    gallery.close()
    open_s, reopened = timed(lambda: open_gallery(directory))
    reopened.close()
    return top_ids, {"build_s": build_s, "add_1k_s": add_s, "search_batch1_ms_per_query": batch1_ms,
                     "search_batch32_ms_per_query": batch32_ms, "remove_100_ms": 1000 * remove_s,
                     "save_s": save_s, "open_s": open_s}


def _build(directory, method, args, vectors):
    gallery = create_gallery(directory, vectors.shape[1], method=method, metric="IP", **args)
    gallery.add(vectors, [f"item {i}" for i in range(len(vectors))])
    return gallery


def table(rows):
    columns = [("method", "{}"), ("build_s", "{:.1f}"), ("add_1k_s", "{:.2f}"),
               ("search_batch1_ms_per_query", "{:.3f}"), ("search_batch32_ms_per_query", "{:.3f}"),
               ("remove_100_ms", "{:.1f}"), ("save_s", "{:.2f}"), ("open_s", "{:.2f}"), ("top1_accuracy", "{:.3f}")]
    headers = ["method", "build s", "add 1k s", "search b1 ms/q", "search b32 ms/q", "remove 100 ms",
               "save s", "open s", "top-1 acc"]
    cells = [[fmt.format(row[key]) for key, fmt in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=320)
    options = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng, options.count, options.dim)
    extra = unit_rows(rng, 1000, options.dim)
    picked = rng.choice(options.count, options.queries, replace=False)
    queries = vectors[picked] + 0.05 * unit_rows(rng, options.queries, options.dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="gallery_bench_") as scratch:
        for method, args in METHODS.items():
            top_ids, result = bench_method(Path(scratch) / method, method, args, vectors, extra, queries)
            rows.append({"method": method, **args, **result, "top1_accuracy": float(np.mean(top_ids == picked))})
            print(f"{method} done", flush=True)
    report = {"count": options.count, "dim": options.dim, "k": K, "metric": "IP", "queries": options.queries,
              "cpu_count": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
              "faiss_version": faiss.__version__, "results": rows}
    print(table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
