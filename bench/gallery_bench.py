"""Gallery backends side by side: `python -m bench.gallery_bench` (100k x 512, a few minutes).

    python -m bench.gallery_bench                          # 100k x 512, faiss methods and Milvus Lite
    python -m bench.gallery_bench --count 1000000          # the big run (needs ~10 GB of memory)
    python -m bench.gallery_bench --milvus-uri http://host:19530   # an existing Milvus instead
    python -m bench.gallery_bench --count 300000 --dim 1280 --milvus-minutes 10 --milvus-index FLAT

Data like a product gallery: `count / 100` products, each photographed ~100 times, as unit
vectors around a product centre (same-product cosine ~0.75), metric IP. Queries are new photos
of random products. Per backend: add throughput (chunks of 10k vectors, each one fsync'd log
record, IVF training included), one-vector add latency (an acknowledged, durable add), search
latency p50/p99 at k=5 with one query per call, recall@5 against faiss Flat's exact top 5,
top-1 product accuracy, remove of 1000 items by id, (faiss) save and reopen, and memory (faiss:
this process's resident growth while the gallery is open; Milvus: the server's resident memory).
With --milvus-minutes Milvus is measured at the size its adds reach in that time. Milvus Lite
runs as its standalone server (gRPC on loopback, as rec_system's workers use it).
Prints a markdown table and writes bench/results/gallery.json.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from clas_system.gallery import (MilvusSettings, create_faiss_gallery, create_milvus_gallery, ivf_training_size,
                                 open_faiss_gallery)
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.process_stats import group_rss_kb
from harness.ports import free_port

from . import RESULTS

REPORT = RESULTS / "gallery.json"
K = 5
CHUNK = 10_000
FAISS_METHODS = {"Flat": {}, "HNSW32": {}, "IVF": {"nlist": 1024}, "IVF-PQ": {"nlist": 1024, "pq_size": 64}}
PHOTOS_PER_PRODUCT = 100
NOISE_NORM = 0.85  # noise vector length around a unit centre: same-product cosine ~0.75 after normalising


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def product_photos(rng, centres, products):
    noise = rng.standard_normal((len(products), centres.shape[1]), dtype=np.float32)
    noise *= NOISE_NORM / np.sqrt(centres.shape[1])
    return unit(centres[products] + noise).astype(np.float32)


def gallery_data(count, dim, queries, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(1, count // PHOTOS_PER_PRODUCT), dim), dtype=np.float32))
    products = rng.integers(0, len(centres), count)
    query_products = rng.integers(0, len(centres), queries)
    return (product_photos(rng, centres, products), [f"p{p}" for p in products],
            product_photos(rng, centres, query_products), [f"p{p}" for p in query_products],
            product_photos(rng, centres, rng.integers(0, len(centres), 100)))


def timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def search_run(gallery, queries):
    """Per-query latencies (ms) and hits, one query per call as a served request makes it."""
    latencies, hits = [], []
    for query in queries:
        seconds, found = timed(lambda: gallery.search(query[None, :], K))
        latencies.append(1000 * seconds)
        hits.append(found[0])
    return np.array(latencies), hits


def rss_mb():
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(gallery, vectors, labels, queries, extra, budget_s=None):
    """The common measurements of one open, empty gallery (faiss or milvus); with budget_s, adds
    stop at the first chunk boundary past that many seconds and the rest is measured at that size."""
    started = time.perf_counter()
    ids = []
    for start in range(0, len(vectors), CHUNK):
        if budget_s is not None and time.perf_counter() - started > budget_s:
            break
        ids += gallery.add(vectors[start:start + CHUNK], labels[start:start + CHUNK])
    add_s = time.perf_counter() - started
    gallery.search(queries[:5], K)  # warm-up (Milvus loads segments, faiss touches pages)
    latencies, hits = search_run(gallery, queries)
    one_add_s, _ = timed(lambda: [gallery.add(row[None, :], ["extra"]) for row in extra])
    doomed = np.random.default_rng(1).choice(ids, 1000, replace=False).tolist()
    remove_s, removed = timed(lambda: gallery.remove(ids=doomed))
    assert removed == 1000, removed
    row = {"count": len(ids), "add_vectors_per_s": len(ids) / add_s, "add_one_ms": 1000 * one_add_s / len(extra),
           "search_p50_ms": float(np.percentile(latencies, 50)), "search_p99_ms": float(np.percentile(latencies, 99)),
           "remove_1000_ms": 1000 * remove_s}
    return row, ids, hits


def recall_at_k(hits, exact_top, id_map):
    """Share of the exact top-K (as row numbers) found in each query's top-K."""
    found = 0
    for query_hits, exact in zip(hits, exact_top):
        rows = {id_map.get(hit.id) for hit in query_hits}
        found += len(rows & set(exact.tolist()))
    return found / exact_top.size


def top1_accuracy(hits, query_labels):
    return float(np.mean([bool(h) and h[0].label == label for h, label in zip(hits, query_labels)]))


def bench_faiss(directory, name, args, data, exact_top):
    vectors, labels, queries, query_labels, extra = data
    method = "IVF" if name.startswith("IVF") else name
    rss_before = rss_mb()
    gallery = create_faiss_gallery(directory, vectors.shape[1], method=method, metric="IP", **args)
    row, ids, hits = measure(gallery, vectors, labels, queries, extra)
    row["memory_mb"] = rss_mb() - rss_before
    save_s, _ = timed(gallery.save)
    gallery.close()
    open_s, reopened = timed(lambda: open_faiss_gallery(directory))
    reopened.close()
    id_map = {gallery_id: row_number for row_number, gallery_id in enumerate(ids)}
    return {"backend": f"faiss {name}", **args, **row, "recall_at_5": recall_at_k(hits, exact_top, id_map),
            "top1_product_accuracy": top1_accuracy(hits, query_labels), "save_s": save_s, "open_s": open_s}


def bench_milvus(uri, index_type, index_params, search_params, data, exact_top, budget_s=None, server_pgid=None):
    """One Milvus index; with budget_s, at the size its adds reach in that time (recall against
    the exact top of what it holds)."""
    vectors, labels, queries, query_labels, extra = data
    settings = MilvusSettings(uri=uri, collection=f"bench_{index_type.lower()}_{os.getpid()}",
                              index_type=index_type, index_params=index_params, search_params=search_params)
    gallery = create_milvus_gallery(settings, vectors.shape[1], metric="IP", overwrite=True)
    try:
        row, ids, hits = measure(gallery, vectors, labels, queries, extra, budget_s)
        save_s, _ = timed(gallery.save)
        if server_pgid is not None:
            row["memory_mb"] = group_rss_kb(server_pgid) / 1024  # the whole server, what it holds included
    finally:
        gallery.drop()
        gallery.close()
    if row["count"] < len(vectors):
        exact_top = exact_top_k(vectors[:row["count"]], queries)
    id_map = {gallery_id: row_number for row_number, gallery_id in enumerate(ids)}
    return {"backend": f"milvus {index_type}", **index_params, **row,
            "recall_at_5": recall_at_k(hits, exact_top, id_map),
            "top1_product_accuracy": top1_accuracy(hits, query_labels), "save_s": save_s, "open_s": None}


def exact_top_k(vectors, queries):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, K)[1]


COLUMNS = [("backend", "{}", "backend"), ("count", "{:,}", "vectors"), ("add_vectors_per_s", "{:,.0f}", "add vectors/s"),
           ("add_one_ms", "{:.2f}", "add 1 ms"), ("search_p50_ms", "{:.2f}", "search p50 ms"),
           ("search_p99_ms", "{:.2f}", "search p99 ms"), ("recall_at_5", "{:.3f}", "recall@5"),
           ("top1_product_accuracy", "{:.3f}", "top-1 acc"), ("remove_1000_ms", "{:.0f}", "remove 1000 ms"),
           ("save_s", "{:.2f}", "save s"), ("open_s", "{:.2f}", "open s"), ("memory_mb", "{:,.0f}", "memory MB")]


def table(rows):
    lines = ["| " + " | ".join(title for _key, _fmt, title in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("-" if row.get(key) is None else fmt.format(row[key])
                                       for key, fmt, _title in COLUMNS) + " |")
    return "\n".join(lines)


def milvus_server(scratch, uri):
    """(uri, process or None): the given server, else a Milvus Lite standalone server started here."""
    if uri:
        return uri, None
    server, uri = start_milvus_server(Path(scratch) / "milvus", free_port(), Path(scratch) / "milvus.log")
    return uri, server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--methods", default=",".join(FAISS_METHODS), help="faiss methods, comma-separated")
    parser.add_argument("--faiss-threads", type=int, default=None, help="OpenMP threads for faiss (default: all)")
    parser.add_argument("--milvus-uri", default=None, help="a running Milvus; default: start Milvus Lite's server")
    parser.add_argument("--milvus-minutes", type=float, default=None,
                        help="stop Milvus's adds after this many minutes and measure it at the size reached")
    parser.add_argument("--milvus-index", action="append", default=None,
                        help="Milvus index type(s) to run (default: FLAT and IVF_FLAT); 'none' to skip Milvus")
    options = parser.parse_args(argv)
    if options.faiss_threads:
        faiss.omp_set_num_threads(options.faiss_threads)
    data = gallery_data(options.count, options.dim, options.queries)
    exact_top = exact_top_k(data[0], data[2])
    rows = []
    with tempfile.TemporaryDirectory(prefix="gallery_bench_") as scratch:
        for name in options.methods.split(","):
            args = FAISS_METHODS[name]
            if "nlist" in args and options.count < ivf_training_size(args["nlist"], args.get("pq_size")):
                print(f"faiss {name}: skipped, {options.count} vectors are too few to train it", flush=True)
                continue
            rows.append(bench_faiss(Path(scratch) / name, name, args, data, exact_top))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        milvus_indexes = options.milvus_index or ["FLAT", "IVF_FLAT"]
        if milvus_indexes != ["none"]:
            uri, server = milvus_server(scratch, options.milvus_uri)
            try:
                for index_type in milvus_indexes:
                    index_params, search_params = ({"nlist": 1024}, {"nprobe": 128}) if index_type == "IVF_FLAT" \
                        else ({}, {})
                    budget_s = 60 * options.milvus_minutes if options.milvus_minutes else None
                    rows.append(bench_milvus(uri, index_type, index_params, search_params, data, exact_top, budget_s,
                                             server.pid if server is not None else None))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
            finally:
                if server is not None:
                    stop_milvus_server(server)
    report = {"count": options.count, "dim": options.dim, "k": K, "metric": "IP", "queries": options.queries,
              "cpu_count": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
              "faiss_version": faiss.__version__, "results": rows}
    print(f"\n{options.count:,} x {options.dim} vectors, k={K}, {options.queries} queries, "
          f"{os.cpu_count()} CPUs\n")
    print(table(rows))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
