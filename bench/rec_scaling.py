"""Served recognition img/s at 8 clients: one process vs 2 workers vs 2 servers on one Milvus.

    python -m bench.rec_scaling --duration 60

Each scenario starts rec_system with `hub serving start -c config.json` under a temporary
HUB_HOME, with a gallery built from ../shared/images (drink + imagenet, one label per image):
  old default     one process, the earlier default pipeline (DINOv2 class token, U²-Net-p at
                  320, plain cosine, fp32), for the ratio
  one process     faiss gallery, the shipped defaults
  2 workers       use_multiprocess, workers 2, one faiss gallery (cpu_threads unset: each worker
                  takes its share, CPUs / 2)
  2 servers       two `hub serving start` on one Milvus Lite standalone server, cpu_threads = CPUs / 2
so every scenario may use the same cores. After a warm-up (each process loads its models on its
first requests) the clients send one image per recognition request for --duration seconds
(the 2-server case alternates servers per request); every answer is checked against the
image's own label. Prints a markdown table, writes bench/results/rec_scaling.json.
Needs forked workers to serve rec_system (recognition without check_process).
"""
import argparse
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import requests

from harness.hub_server import HUB_MODULES, install_hub_modules, start_hub_server
from harness.milvus_server import start_milvus_server, stop_milvus_server
from harness.payloads import SHARED_IMAGES, image_b64
from harness.ports import free_port

from . import OLD_REC_DEFAULT, RESULTS

WARMUP_S = 15
FOLDERS = ("drink", "imagenet")


def gallery_entries():
    return [(f"{folder}/{p.name}", p.stem) for folder in FOLDERS for p in sorted((SHARED_IMAGES / folder).iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg")]


def start_server(hub_home, workdir, init_args, workers=None):
    """rec_system under hub serving, bound to loopback; gunicorn workers when `workers` is given."""
    return start_hub_server(hub_home, workdir, timeout_s=300,
                            modules={"rec_system": {"host": "127.0.0.1", **init_args}},
                            use_multiprocess=workers is not None, workers=workers or 1)


def drive(urls, entries, clients, seconds):
    """(images answered per second, wrong or failed answers) with `clients` threads for `seconds`."""
    payloads = [({"images": [image_b64(path)]}, label) for path, label in entries]
    counts, failures, lock = [0], [], threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number):
        session = requests.Session()
        for i in itertools.count(number):
            if time.monotonic() >= deadline:
                return
            payload, label = payloads[i % len(payloads)]
            url = urls[i % len(urls)]
            try:
                body = session.post(f"{url}/predict/rec_system", json=payload, timeout=120).json()
                regions = body["results"]["prediction"][0]
                ok = body["status"] == "000" and regions and regions[0]["rec_docs"] == label
            except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as err:
                ok, body = False, repr(err)
            with lock:
                if ok:
                    counts[0] += 1
                else:
                    failures.append(str(body)[:300])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts[0] / (time.monotonic() - started), failures


def run_scenario(name, servers, entries, options):
    urls = [server.url for server in servers]
    drive(urls, entries, options.clients, WARMUP_S)
    images_per_s, failures = drive(urls, entries, options.clients, options.duration)
    print(f"{name}: {images_per_s:.1f} img/s, {len(failures)} failed", flush=True)
    return {"scenario": name, "images_per_s": images_per_s, "failed": len(failures), "failures": failures[:5]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--backend", default="auto", help="predictor backend")
    parser.add_argument("--milvus-uri", default=None, help="a running Milvus; default: start Milvus Lite's server")
    options = parser.parse_args(argv)
    cpus = os.cpu_count()
    entries = gallery_entries()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rec_scaling_") as scratch:
        scratch = Path(scratch)
        install_hub_modules(scratch / "hub_home", [HUB_MODULES / "rec_system"])
        data_file = scratch / "list.txt"
        data_file.write_text("".join(f"{path}\t{label}\n" for path, label in entries))
        common = {"data_file": str(data_file), "image_root": str(SHARED_IMAGES), "backend": options.backend}

        def faiss_args(folder, **args):
            return {**common, "index_dir": str(scratch / folder), **args}

        for name, args, workers in (("one process, old default", faiss_args("old", **OLD_REC_DEFAULT), None),
                                    ("one process", faiss_args("one"), None),
                                    ("2 workers", faiss_args("workers"), 2)):
            server = start_server(scratch / "hub_home", scratch, args, workers)
            try:
                rows.append(run_scenario(name, [server], entries, options))
            finally:
                server.stop()

        milvus_proc, uri = None, options.milvus_uri
        if uri is None:
            milvus_proc, uri = start_milvus_server(scratch / "milvus", free_port(), scratch / "milvus.log")
        milvus_args = {**common, "index_backend": "milvus", "cpu_threads": max(1, cpus // 2),
                       "milvus": {"uri": uri, "collection": f"rec_scaling_{os.getpid()}"}}
        servers = []
        try:
            for _ in range(2):  # one after the other: the first builds the collection, the second opens it
                servers.append(start_server(scratch / "hub_home", scratch, milvus_args))
            rows.append(run_scenario("2 servers, one Milvus", servers, entries, options))
        finally:
            for server in servers:
                server.stop()
            if milvus_proc is not None:
                stop_milvus_server(milvus_proc)
    one = rows[1]["images_per_s"]
    print(f"\n{options.clients} clients, {options.duration:.0f} s each, {cpus} CPUs, backend {options.backend}\n")
    print("| scenario | img/s | vs one process | failed |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['scenario']} | {row['images_per_s']:.1f} | {row['images_per_s'] / one:.2f}x | {row['failed']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rec_scaling.json").write_text(json.dumps({"clients": options.clients, "duration_s": options.duration,
                                                           "cpu_count": cpus, "backend": options.backend,
                                                           "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
