"""Served recognition img/s at 8 clients, on shelf photos and single-object photos: the shipped
default against earlier defaults, and across processes and servers.

    python -m bench.rec_scaling --duration 60
    python -m bench.rec_scaling --photos shelf --scenarios "before,default,2 workers" --duration 20

Each scenario starts rec_system with `hub serving start -c config.json` under a temporary
HUB_HOME, with a gallery built from ../shared/images (drink + imagenet, one label per image, and
the product gallery's anmuxi photos):
  old default     one process, the default before open-set recognition (bench.OLD_REC_DEFAULT)
  before          one process, the default before the speed work (bench.BEFORE_SPEED_REC_DEFAULT)
  default         one process, faiss gallery, the shipped defaults
  2 workers       use_multiprocess, workers 2, one faiss gallery (cpu_threads unset: each worker
                  takes its share, CPUs / 2)
  2 servers       two `hub serving start` on one Milvus Lite standalone server, cpu_threads = CPUs / 2
so every scenario may use the same cores. Photo sets:
  shelf           several products per photo (product queries, drink shelves, a COCO scene)
  single          one object per photo (ImageNet photos, the anmuxi product photos)
After a warm-up (each process loads its models on its first requests) the clients send one image
per recognition request for --duration seconds (the 2-server case alternates servers per
request); every answer is checked (status 000, and the photo's own label among its regions where
the gallery holds it). Prints a markdown table (img/s, request latency p50/p99, the servers' CPU
time per image, which holds better than img/s on a machine others load, ratios of img/s to the
shipped default and to `before` on the same photos), writes bench/results/rec_scaling.json.
"""
import argparse
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from harness.hub_server import HUB_MODULES, install_hub_modules, start_hub_server
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.payloads import SHARED_IMAGES, image_b64
from harness.ports import free_port
from harness.process_stats import CLOCK_TICKS, group_cpu_ticks

from . import BEFORE_SPEED_REC_DEFAULT, OLD_REC_DEFAULT, RESULTS

WARMUP_S = 15
JPEG = (".jpg", ".jpeg")


def jpegs(folder):
    return sorted(p for p in (SHARED_IMAGES / folder).iterdir() if p.suffix.lower() in JPEG)


def gallery_entries():
    """(path under ../shared/images, label): drink and imagenet photos under their own names, anmuxi's."""
    own = [(f"{folder}/{p.name}", p.stem) for folder in ("drink", "imagenet") for p in jpegs(folder)]
    return own + [(f"product/gallery/anmuxi/{p.name}", "anmuxi") for p in jpegs("product/gallery/anmuxi")]


# photo set -> [(path under ../shared/images, label it must be given, or None: any answer)]
PHOTO_SETS = {
    "shelf": lambda: ([("product/query/anmuxi.jpg", "anmuxi"), ("product/query/daoxiangcunjinzhubing_6.jpg", None)]
                      + [(f"drink/{p.name}", p.stem) for p in jpegs("drink")]
                      + [("misc/coco_000000570688.jpg", None)]),
    "single": lambda: ([(f"imagenet/{p.name}", p.stem) for p in jpegs("imagenet")]
                       + [(f"product/gallery/anmuxi/{p.name}", "anmuxi") for p in jpegs("product/gallery/anmuxi")]),
}
ONE_PROCESS = {"old default": OLD_REC_DEFAULT, "before": BEFORE_SPEED_REC_DEFAULT, "default": {}}
SCENARIOS = (*ONE_PROCESS, "2 workers", "2 servers")


def start_server(hub_home, workdir, init_args, workers=None):
    """rec_system under hub serving, bound to loopback; gunicorn workers when `workers` is given."""
    return start_hub_server(hub_home, workdir, timeout_s=300,
                            modules={"rec_system": {"host": "127.0.0.1", **init_args}},
                            use_multiprocess=workers is not None, workers=workers or 1)


def answer_ok(body, label):
    if body.get("status") != "000":
        return False
    regions = body["results"]["prediction"][0]
    return label is None or any(region["rec_docs"] == label for region in regions)


def drive(urls, photos, clients, seconds):
    """(images answered per second, request latencies in s, failed answers) with `clients`
    threads for `seconds`."""
    payloads = [({"images": [image_b64(path)]}, label) for path, label in photos]
    latencies, failures, lock = [], [], threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number):
        session = requests.Session()
        for i in itertools.count(number):
            if time.monotonic() >= deadline:
                return
            payload, label = payloads[i % len(payloads)]
            started = time.monotonic()
            try:
                body = session.post(f"{urls[i % len(urls)]}/predict/rec_system", json=payload, timeout=120).json()
                ok = answer_ok(body, label)
            except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as err:
                ok, body = False, repr(err)
            with lock:
                if ok:
                    latencies.append(time.monotonic() - started)
                else:
                    failures.append(str(body)[:300])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - started), latencies, failures


def servers_cpu_s(servers):
    return sum(group_cpu_ticks(server.pgid) for server in servers) / CLOCK_TICKS


def run_scenario(name, photo_set, servers, options):
    urls = [server.url for server in servers]
    photos = PHOTO_SETS[photo_set]()
    drive(urls, photos, options.clients, WARMUP_S)
    cpu_before = servers_cpu_s(servers)
    images_per_s, latencies, failures = drive(urls, photos, options.clients, options.duration)
    cpu_s = servers_cpu_s(servers) - cpu_before
    row = {"photos": photo_set, "scenario": name, "images_per_s": images_per_s,
           "cpu_ms_per_image": 1000 * cpu_s / len(latencies) if latencies else None,
           "p50_ms": 1000 * float(np.percentile(latencies, 50)) if latencies else None,
           "p99_ms": 1000 * float(np.percentile(latencies, 99)) if latencies else None,
           "failed": len(failures), "failures": failures[:5]}
    print(f"{photo_set}, {name}: {images_per_s:.2f} img/s, {len(failures)} failed", flush=True)
    return row


def run_photo_set(photo_set, scenarios, scratch, options):
    common = {"data_file": str(scratch / "list.txt"), "image_root": str(SHARED_IMAGES), "backend": options.backend}
    rows = []
    for name in scenarios:
        if name in ONE_PROCESS or name == "2 workers":
            args = {**common, **ONE_PROCESS.get(name, {}), "index_dir": str(scratch / f"{photo_set}_{name}")}
            server = start_server(scratch / "hub_home", scratch, args, 2 if name == "2 workers" else None)
            try:
                rows.append(run_scenario(name, photo_set, [server], options))
            finally:
                server.stop()
    if "2 servers" in scenarios:
        rows.append(run_two_servers(photo_set, common, scratch, options))
    return rows


def run_two_servers(photo_set, common, scratch, options):
    milvus_proc, uri = None, options.milvus_uri
    if uri is None:
        milvus_proc, uri = start_milvus_server(scratch / f"milvus_{photo_set}", free_port(), scratch / "milvus.log")
    milvus_args = {**common, "index_backend": "milvus", "cpu_threads": max(1, os.cpu_count() // 2),
                   "milvus": {"uri": uri, "collection": f"rec_scaling_{photo_set}_{os.getpid()}"}}
    servers = []
    try:
        for _ in range(2):  # one after the other: the first builds the collection, the second opens it
            servers.append(start_server(scratch / "hub_home", scratch, milvus_args))
        return run_scenario("2 servers", photo_set, servers, options)
    finally:
        for server in servers:
            server.stop()
        if milvus_proc is not None:
            stop_milvus_server(milvus_proc)


def table(rows):
    lines = ["| photos | scenario | img/s | p50 ms | p99 ms | CPU ms / image | vs default | vs before | failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        same = {r["scenario"]: r["images_per_s"] for r in rows if r["photos"] == row["photos"]}
        ratios = [f"{row['images_per_s'] / same[name]:.2f}x" if same.get(name) else "-" for name in ("default", "before")]
        latency = [f"{row[key]:.0f}" if row[key] is not None else "-"
                   for key in ("p50_ms", "p99_ms", "cpu_ms_per_image")]
        lines.append(f"| {row['photos']} | {row['scenario']} | {row['images_per_s']:.2f} | {' | '.join(latency)} | "
                     f"{' | '.join(ratios)} | {row['failed']} |")
    return "\n".join(lines)


def names(text, known, what):
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--photos", default=",".join(PHOTO_SETS), help=f"of {', '.join(PHOTO_SETS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)}")
    parser.add_argument("--backend", default="auto", help="predictor backend")
    parser.add_argument("--milvus-uri", default=None, help="a running Milvus; default: start Milvus Lite's server")
    options = parser.parse_args(argv)
    photo_sets = names(options.photos, PHOTO_SETS, "photo set")
    scenarios = names(options.scenarios, SCENARIOS, "scenario")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rec_scaling_") as scratch:
        scratch = Path(scratch)
        install_hub_modules(scratch / "hub_home", [HUB_MODULES / "rec_system"])
        (scratch / "list.txt").write_text("".join(f"{path}\t{label}\n" for path, label in gallery_entries()))
        for photo_set in photo_sets:
            rows += run_photo_set(photo_set, scenarios, scratch, options)
    print(f"\n{options.clients} clients, {options.duration:.0f} s each, {os.cpu_count()} CPUs, "
          f"backend {options.backend}, load {os.getloadavg()[0]:.1f}\n")
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rec_scaling.json").write_text(json.dumps({"clients": options.clients, "duration_s": options.duration,
                                                           "cpu_count": os.cpu_count(), "backend": options.backend,
                                                           "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
