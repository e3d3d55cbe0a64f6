"""Throughput benchmark: `python -m bench.run` (or `make bench`). Loopback only.

For each packaged model, in one run on the same images: raw predictor img/s at batch 1/8/32;
served img/s and p50/p99 latency for 1/4/8 concurrent single-image clients with batching on,
off (batch_size 1) and PaddleHub's own one-request-at-a-time runner; the same through
PaddleClas's reference ndarray protocol; wire bytes and client CPU per image for both
protocols; decode+preprocess of the large test image, full vs reduced. Ratios are computed
from numbers measured in this run. Prints one table and writes bench/results/throughput.json.
"""
import argparse
import base64
import dataclasses
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from clas_system.classifier import build_classifier
from clas_system.codec import decode_image, ndarray_to_b64
from clas_system.predictor import create_predictor
from params import load_classifier_settings

from .soak import DEAD_TELEMETRY, free_port, hub_env

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results"
HUB = str(Path(sys.executable).with_name("hub"))

MODELS = {
    "pulc_orientation (ONNX)": {
        "preset": "text_image_orientation",
        "images": ["orientation/img_rot0_demo.jpg", "orientation/img_rot180_demo.jpg",
                   "imagenet/ILSVRC2012_val_00006666.JPEG", "imagenet/ILSVRC2012_val_00000010.jpeg",
                   "imagenet/ILSVRC2012_val_00010010.jpeg", "imagenet/ILSVRC2012_val_00020010.jpeg",
                   "misc/coco_000000570688.jpg", "product/gallery/anmuxi/004.jpg"],
    },
    "text_line (Paddle)": {
        "preset": "text_line_orientation",
        "images": ["textline/textline_orientation_test_0_0.png", "textline/textline_orientation_test_1_0.png"],
    },
}
# (init_args, server options): -m style single process, and --use_multiprocess with 2 workers
# of one math thread each (each worker has its own GIL: Paddle's run() holds it).
SERVER_MODES = {
    "batching on": ({}, {}),
    "batching off": ({"batch_size": 1}, {}),
    "paddlehub runner": ({"request_threads": 0}, {}),
    "2 workers, batching on": ({"cpu_threads": 1}, {"use_multiprocess": True, "workers": 2}),
    "2 workers, batching off": ({"cpu_threads": 1, "batch_size": 1}, {"use_multiprocess": True, "workers": 2}),
}


def raw_img_per_s(settings, tensor, batch, seconds):
    predictor = create_predictor(settings.model_path, settings.predictor, batch)
    feeds = {predictor.input_names[0]: np.stack([tensor] * batch)}
    for _ in range(3):
        predictor.run(feeds)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.run(feeds)
        done += batch
    return done / (time.perf_counter() - start)


def client_cpu_per_image(encode, names, repeats=50):
    """(request bodies, client CPU seconds per image): `encode` repeated to beat the clock's grain."""
    start = time.process_time()
    for _ in range(repeats):
        bodies = [encode(name) for name in names]
    return bodies, (time.process_time() - start) / (repeats * len(names))


def file_body(name):
    return json.dumps({"images": [base64.b64encode((IMAGES / name).read_bytes()).decode()]}).encode()


def ndarray_body(engine, name):
    """PaddleClas's reference client: decode + preprocess on the client, ship a float32 tensor."""
    tensor = engine.preprocess(decode_image((IMAGES / name).read_bytes(), to_rgb=engine.to_rgb))
    text, revert = ndarray_to_b64(tensor[None])
    return json.dumps({"images": text, "revert_params": revert}).encode()


def drive(port, module, bodies, clients, seconds):
    """`clients` threads, each with one keep-alive connection, sending single-image requests."""
    latencies, errors, stop = [], [], time.monotonic() + seconds

    def client(index):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = index
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += clients
            sent = time.perf_counter()
            conn.request("POST", f"/predict/{module}", body, {"Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            latencies.append(time.perf_counter() - sent)
            if answer.get("status") != "000":
                errors.append(answer.get("msg"))
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {"img_per_s": len(ms) / elapsed, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "errors": len(errors), "requests": len(ms)}


class Server:
    def __init__(self, hub_home, init_args, options=None):
        self.port = free_port()
        config = {"modules_info": {"clas_system": {"init_args": {"version": "1.0.0", **init_args},
                                                   "predict_args": {}}}, "port": self.port, **(options or {})}
        self.config_path = Path(hub_home) / f"config_{self.port}.json"
        self.config_path.write_text(json.dumps(config))
        self.proc = subprocess.Popen([HUB, "serving", "start", "-c", str(self.config_path)], env=hub_env(hub_home),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server with {init_args} exited with {self.proc.returncode}")
                time.sleep(0.3)
        raise RuntimeError("server did not start")

    def stop(self):
        os.killpg(self.proc.pid, 15)
        self.proc.wait(timeout=30)


def prepare_hub_home():
    home = tempfile.mkdtemp(prefix="bench_hub_")
    env = hub_env(home)
    subprocess.run([HUB, "config", f"server=={DEAD_TELEMETRY}"], env=env, check=True, capture_output=True)
    subprocess.run([HUB, "install", str(REPO / "hubmodules" / "clas_system")], env=env, check=True, capture_output=True)
    return home


def decode_timings(repeats=20):
    """Decode + preprocess of the large test image, full vs reduced, for the PULC preprocessing.
    The shared wangzai.jpg is a PNG inside (reduced decoding applies to JPEG only), so it is
    measured as it is and re-encoded as a JPEG, plus a 4x larger JPEG standing for a phone photo."""
    settings = load_classifier_settings({"preset": "text_image_orientation"})
    variants = {}
    original = (IMAGES / "misc" / "wangzai.jpg").read_bytes()
    pixels = cv2.imread(str(IMAGES / "misc" / "wangzai.jpg"))
    variants["wangzai.jpg as shipped (PNG 1596x1204)"] = original
    variants["wangzai as JPEG q95 (1596x1204)"] = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    big = cv2.resize(pixels, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    variants["wangzai x2.5 as JPEG q95 (3990x3010)"] = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    rows = {}
    for name, data in variants.items():
        row = {}
        for label, reduced in (("full", False), ("reduced", True)):
            engine = build_classifier(dataclasses.replace(settings, serving=dataclasses.replace(
                settings.serving, reduced_decode=reduced)))
            engine.image_to_tensor(data)
            start = time.perf_counter()
            for _ in range(repeats):
                tensor = engine.image_to_tensor(data)
            row[f"{label}_ms"] = (time.perf_counter() - start) / repeats * 1000
            row[f"{label}_scores"] = engine.predict_tensors([tensor])[0].tolist()
        row["speedup"] = row["full_ms"] / row["reduced_ms"]
        row["top1_same"] = int(np.argmax(row["full_scores"])) == int(np.argmax(row["reduced_scores"]))
        row["max_abs_score_delta"] = float(np.max(np.abs(np.subtract(row["full_scores"], row["reduced_scores"]))))
        rows[name] = row
    return rows


def bench_model(hub_home, title, spec, seconds, client_counts):
    settings = load_classifier_settings({"preset": spec["preset"]})
    engine = build_classifier(settings)
    tensor = engine.image_to_tensor((IMAGES / spec["images"][0]).read_bytes())
    out = {"raw": {f"batch {b}": raw_img_per_s(settings, tensor, b, seconds) for b in (1, 8, 32)}}
    file_bodies, file_cpu = client_cpu_per_image(file_body, spec["images"])
    nd_bodies, nd_cpu = client_cpu_per_image(lambda name: ndarray_body(engine, name), spec["images"])
    out["wire_bytes_per_image"] = {"file": statistics.mean(map(len, file_bodies)),
                                   "ndarray": statistics.mean(map(len, nd_bodies))}
    out["client_cpu_ms_per_image"] = {"file": file_cpu * 1000, "ndarray": nd_cpu * 1000}
    out["served"] = {}
    for mode, (init_args, options) in SERVER_MODES.items():
        server = Server(hub_home, {"preset": spec["preset"], **init_args}, options)
        try:
            drive(server.port, "clas_system", file_bodies, 2, 1.0)  # warm-up: the model loads on first use
            for protocol, bodies in (("file", file_bodies), ("ndarray", nd_bodies)):
                for clients in client_counts:
                    out["served"][f"{mode} | {protocol} | {clients} clients"] = drive(
                        server.port, "clas_system", bodies, clients, seconds)
        finally:
            server.stop()
    raw8 = out["raw"]["batch 8"]
    top = max(client_counts)
    served = {mode: out["served"][f"{mode} | file | {top} clients"]["img_per_s"] for mode in SERVER_MODES}
    out["ratios"] = {f"served/raw batch-8 ({top} clients, batching on)": served["batching on"] / raw8,
                     f"served/raw batch-8 ({top} clients, 2 workers)": served["2 workers, batching on"] / raw8,
                     f"batching on/off ({top} clients)": served["batching on"] / served["batching off"],
                     f"batching on/off ({top} clients, 2 workers)":
                         served["2 workers, batching on"] / served["2 workers, batching off"],
                     f"batching on / paddlehub runner ({top} clients)": served["batching on"] / served["paddlehub runner"],
                     "ndarray/file wire bytes": out["wire_bytes_per_image"]["ndarray"] / out["wire_bytes_per_image"]["file"]}
    return out


def print_table(results):
    for title, out in results["models"].items():
        print(f"\n== {title}")
        print("raw predictor img/s: " + ", ".join(f"{k} {v:.0f}" for k, v in out["raw"].items()))
        print(f"{'server | protocol | clients':52} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for key, row in out["served"].items():
            print(f"{key:52} {row['img_per_s']:8.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:7d}")
        wire, cpu = out["wire_bytes_per_image"], out["client_cpu_ms_per_image"]
        print(f"wire bytes/image: file {wire['file']:.0f}, ndarray {wire['ndarray']:.0f}; "
              f"client CPU ms/image: file {cpu['file']:.3f}, ndarray {cpu['ndarray']:.3f}")
        print("ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in out["ratios"].items()))
    print("\n== decode + preprocess, PULC preprocessing")
    for name, row in results["decode"].items():
        print(f"{name:40} full {row['full_ms']:6.1f} ms  reduced {row['reduced_ms']:6.1f} ms  x{row['speedup']:.1f}  "
              f"top-1 same {row['top1_same']}  max |d score| {row['max_abs_score_delta']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args(argv)
    hub_home = prepare_hub_home()
    results = {"machine": {"cpus": os.cpu_count()}, "seconds_per_measurement": args.seconds,
               "models": {title: bench_model(hub_home, title, spec, args.seconds, args.clients)
                          for title, spec in MODELS.items()},
               "decode": decode_timings()}
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {RESULTS / 'throughput.json'}")


if __name__ == "__main__":
    main()
