"""A curated gallery's costs: `python -m bench.gallery_list` (1M items, about a minute).

    python -m bench.gallery_list                      # 1M synthetic items on faiss, list page latencies
    python -m bench.gallery_list --count 100000 --milvus   # also Milvus Lite (its standalone server)

Builds a faiss gallery of `count` items (64-d vectors: list cost does not depend on the vector
size), count / 100 labels, every other item with a doc, then times `list_items` pages of 50:
at random offsets, filtered by one label, by a text query, and by the `after` cursor (p50 / p99
of PAGES calls each). Then the side-store cost per item of what rec_system keeps at add time
(thumbnail + region) for the shared photos, measured by kept_images as served. Prints a
markdown table and writes bench/results/gallery_list.json.
"""
import argparse
import json
import os
import tempfile
import time
import uuid

import numpy as np

from clas_system.gallery import GalleryError, MilvusSettings, create_faiss_gallery, create_milvus_gallery
from clas_system.gallery.kept_images import THUMBNAIL_SIDE, jpeg_within
from clas_system.ops.decode import decode_image
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.payloads import SHARED_IMAGES
from harness.ports import free_port

from . import RESULTS

REPORT = RESULTS / "gallery_list.json"
DIM = 64
CHUNK = 100_000
PAGES = 200
PAGE = 50


def fill(gallery, count):
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        vectors = rng.standard_normal((n, DIM)).astype(np.float32)
        labels = [f"product {(start + i) % max(1, count // 100)}" for i in range(n)]
        docs = [f"shelf {(start + i) % 997}" if i % 2 else None for i in range(n)]
        gallery.add(vectors, labels, docs)
    return time.perf_counter() - started


def percentiles(call, count):
    times = []
    for i in range(count):
        started = time.perf_counter()
        try:
            call(i)
        except GalleryError as err:  # e.g. a Milvus call past its deadline: reported, not fatal
            return {"failed": f"call {i}: {err}"[:300]}
        times.append(time.perf_counter() - started)
    return {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
            "p99_ms": round(1000 * float(np.percentile(times, 99)), 3)}


def list_latencies(gallery, count, deep_offsets=True):
    rng = np.random.default_rng(1)
    offsets = rng.integers(0, count - PAGE, PAGES) if deep_offsets else rng.integers(0, 16384 - PAGE, PAGES)
    afters = rng.integers(0, count, PAGES)
    return {
        "page at a random offset": percentiles(lambda i: gallery.list_items(offset=int(offsets[i]), limit=PAGE),
                                               PAGES),
        "page after a random id (cursor)": percentiles(lambda i: gallery.list_items(after=int(afters[i]),
                                                                                   limit=PAGE), PAGES),
        "one label's first page": percentiles(lambda i: gallery.list_items(label=f"product {i}", limit=PAGE), PAGES),
        "text query's first page": percentiles(lambda i: gallery.list_items(text=f"shelf {i}", limit=PAGE), PAGES),
    }


def kept_bytes(region_side=320):
    """Mean bytes of a thumbnail and a region per shared photo, as rec_system keeps them."""
    paths = [p for folder in ("drink", "imagenet", "misc", "product/gallery/anmuxi") for p in
             sorted((SHARED_IMAGES / folder).iterdir())]
    images = [decode_image(p.read_bytes(), str(p)) for p in paths]
    thumbs = [len(jpeg_within(image, THUMBNAIL_SIDE)) for image in images]
    regions = [len(jpeg_within(image, region_side)) for image in images]
    return {"photos": len(paths), "thumbnail_mean_bytes": int(np.mean(thumbs)), "thumbnail_max_bytes": max(thumbs),
            "region_mean_bytes": int(np.mean(regions)), "region_max_bytes": max(regions),
            "per_item_mean_bytes": int(np.mean(thumbs) + np.mean(regions))}


def run_milvus(count, tmp):
    proc, uri = start_milvus_server(os.path.join(tmp, "milvus"), free_port(), os.path.join(tmp, "milvus.log"))
    try:
        gallery = create_milvus_gallery(MilvusSettings(uri=uri, collection=f"b_{uuid.uuid4().hex[:8]}"), DIM)
        fill_s = fill(gallery, count)
        return {"fill_s": round(fill_s, 1), **list_latencies(gallery, count, deep_offsets=False)}
    finally:
        stop_milvus_server(proc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--milvus", action="store_true", help="also Milvus Lite (slow to fill: use --count 100000)")
    args = parser.parse_args(argv)
    report = {"count": args.count, "page": PAGE, "pages": PAGES, "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        with create_faiss_gallery(os.path.join(tmp, "g"), DIM, method="Flat") as gallery:
            report["faiss_fill_s"] = round(fill(gallery, args.count), 1)
            report["faiss"] = list_latencies(gallery, args.count)
        if args.milvus:
            report["milvus"] = run_milvus(args.count, tmp)
    report["kept_per_item"] = kept_bytes()
    print(f"{args.count} items, pages of {PAGE}, {PAGES} calls each (load {report['load'][0]:.1f})\n")
    print("| backend | call | p50 ms | p99 ms |\n|---|---|---|---|")
    for backend in ("faiss", "milvus"):
        for call, times in report.get(backend, {}).items():
            if isinstance(times, dict):
                print(f"| {backend} | {call} | {times.get('p50_ms', times.get('failed'))} | {times.get('p99_ms', '')} |")
    print(f"\nkept per item: {json.dumps(report['kept_per_item'])}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
