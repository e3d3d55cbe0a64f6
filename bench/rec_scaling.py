"""Served recognition img/s at 8 clients: one process vs 2 workers vs 2 servers on one Milvus.

    python -m bench.rec_scaling --duration 60

Each scenario starts rec_system with `hub serving start -c config.json` under a temporary
HUB_HOME, with a gallery built from ../shared/images (drink + imagenet, one label per image):
  one process     faiss gallery, cpu_threads = CPUs (every core for one process)
  2 workers       use_multiprocess, workers 2, one faiss gallery, cpu_threads = CPUs / 2
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
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.soak import DEAD_TELEMETRY, HUB, IMAGES, REPO, RESULTS, free_port, hub_env

WARMUP_S = 15
FOLDERS = ("drink", "imagenet")


def gallery_entries():
    return [(f"{folder}/{p.name}", p.stem) for folder in FOLDERS for p in sorted((IMAGES / folder).iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg")]


def install_rec_system(hub_home):
    env = hub_env(hub_home)
    subprocess.run([HUB, "config", f"server=={DEAD_TELEMETRY}"], env=env, check=True, capture_output=True)
    done = subprocess.run([HUB, "install", str(REPO / "hubmodules" / "rec_system")], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0 or "Successfully installed" not in done.stdout + done.stderr:
        raise SystemExit(f"hub install rec_system failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def start_server(hub_home, workdir, init_args, workers=None):
    """(process, url) of rec_system under hub serving; gunicorn workers when `workers` is given."""
    port = free_port()
    config = {"modules_info": {"rec_system": {"init_args": {"version": "1.0.0", "host": "127.0.0.1", **init_args},
                                              "predict_args": {}}},
              "port": port, "use_multiprocess": workers is not None, "workers": workers or 1}
    config_path = Path(workdir) / f"config_{port}.json"
    config_path.write_text(json.dumps(config))
    log_path = Path(workdir) / f"server_{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([HUB, "serving", "start", "-c", str(config_path)], env=hub_env(hub_home),
                                stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub serving exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/ready", timeout=5).status_code == 200:
                return proc, url
        except requests.RequestException:  # not listening yet, or workers still loading models
            pass
        time.sleep(0.5)
    raise SystemExit(f"hub serving did not answer within 300 s:\n{log_path.read_text()[-3000:]}")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def drive(urls, entries, clients, seconds):
    """(images answered per second, wrong or failed answers) with `clients` threads for `seconds`."""
    import base64
    payloads = [({"images": [base64.b64encode((IMAGES / path).read_bytes()).decode()]}, label)
                for path, label in entries]
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
    urls = [url for _proc, url in servers]
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
        install_rec_system(scratch / "hub_home")
        data_file = scratch / "list.txt"
        data_file.write_text("".join(f"{path}\t{label}\n" for path, label in entries))
        common = {"data_file": str(data_file), "image_root": str(IMAGES), "backend": options.backend}

        def faiss_args(folder, threads):
            return {**common, "index_dir": str(scratch / folder), "cpu_threads": threads}

        for name, args, workers in (("one process", faiss_args("one", cpus), None),
                                    ("2 workers", faiss_args("workers", max(1, cpus // 2)), 2)):
            server = start_server(scratch / "hub_home", scratch, args, workers)
            try:
                rows.append(run_scenario(name, [server], entries, options))
            finally:
                stop(server[0])

        milvus_proc, uri = None, options.milvus_uri
        if uri is None:
            from tests.milvus_server import start_milvus_server
            milvus_proc, uri = start_milvus_server(scratch / "milvus", free_port(), scratch / "milvus.log")
        milvus_args = {**common, "index_backend": "milvus", "cpu_threads": max(1, cpus // 2),
                       "milvus": {"uri": uri, "collection": f"rec_scaling_{os.getpid()}"}}
        servers = []
        try:
            for _ in range(2):  # one after the other: the first builds the collection, the second opens it
                servers.append(start_server(scratch / "hub_home", scratch, milvus_args))
            rows.append(run_scenario("2 servers, one Milvus", servers, entries, options))
        finally:
            for proc, _url in servers:
                stop(proc)
            if milvus_proc is not None:
                from tests.milvus_server import stop_milvus_server
                stop_milvus_server(milvus_proc)
    one = rows[0]["images_per_s"]
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
