"""Throughput benchmark: `make bench` (= `python -m bench.run`). Loopback only, one run.

One table per packaged model (PULC text_image_orientation on ONNX, PaddleOCR's text-line
classifier on Paddle), every row measured in this run on the same real images:
- raw predictor per backend (paddle, onnxruntime, openvino; "not available" when a backend is
  not installed or cannot read the model), batch 1 and 8, float32 tensors in, img/s and CPU ms
  per image of this process; OpenVINO batch 8 also on one thread and at bf16;
- the engine floor: decode + preprocess + infer in process, batch 8;
- our server (`hub serving start`), one process and 2 workers (`use_multiprocess`, cpu_threads
  1 each), the body protocols of bench/served.py (file protocol, binary body, multipart with 8
  images per request, PaddleClas's ndarray protocol), 8 clients driven by wrk (one C thread: a Python load
  generator would steal the server's CPU on a 2-core machine); img/s, p50/p99, and the server's
  CPU ms per image (utime+stime of its process group from /proc, over the images served);
- PaddleClas 2.6.0's offline deploy/python/predict_cls.py (its wheel, own venv: see
  harness/paddleclas_reference.py);
- with `--paddleclas-src PATH` (a PaddleClas source tree, tested at d178931; see
  bench/paddleclas_hub.py), PaddleClas's own hub module serving the same model, one process and
  2 workers, ndarray protocol;
- parity of each available backend with PaddleClas's own deploy preprocessing + predictor;
then the ratios issues 9 and 25 ask for (the server's CPU per image against the cheapest raw
OpenVINO batch-8 row), the machine's other load during every served row (load
average before it, and CPU used by anything but the server and wrk), and a 12-MP JPEG decoded
+ preprocessed with reduced vs full decoding. Writes bench/results/throughput.json.

    python -m bench.run --quick                          # ~3 s per cell, a few minutes
    python -m bench.run --paddleclas-src /tmp/PaddleClas # + PaddleClas's hub module rows

wrk comes with `make system-packages` (make bench runs it).
"""
import argparse
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from clas_system.errors import ModelError
from clas_system.runtime.predictor import choose_backend, cpu_share, create_predictor
from clas_system.tasks.classify import build_classifier
from harness.paddleclas_reference import PaddleClasReferenceError, reference_scores, time_predict_cls
from harness.payloads import SHARED_IMAGES
from harness.process_stats import loadavg
from harness.wrk import CLIENTS, find_wrk
from params import load_classifier_settings

from . import RESULTS, paddleclas_hub
from .served import ENCODED, float_tensor, served_rows

BACKENDS = ("paddle", "onnxruntime", "openvino")

MODELS = {
    "pulc": {
        "title": "PULC text_image_orientation (ONNX model)",
        "preset": "text_image_orientation",
        "images": ["orientation/img_rot0_demo.jpg", "orientation/img_rot180_demo.jpg",
                   "imagenet/ILSVRC2012_val_00006666.JPEG", "imagenet/ILSVRC2012_val_00000010.jpeg",
                   "imagenet/ILSVRC2012_val_00010010.jpeg", "imagenet/ILSVRC2012_val_00020010.jpeg",
                   "misc/coco_000000570688.jpg", "drink/youjia.jpeg"],
        "target_vs_paddleclas": 2.0,
    },
    "text_line": {
        "title": "text-line orientation (Paddle model)",
        "preset": "text_line_orientation",
        "images": ["textline/textline_orientation_test_0_0.png", "textline/textline_orientation_test_1_0.png"],
        "target_vs_paddleclas": 3.0,
    },
}
# (init_args, use_multiprocess): 2 workers of one math thread each, as issue 9 measured them.
OUR_SERVERS = {"one process": ({}, False), "2 workers": ({"cpu_threads": 1}, True),
               # opt-in precision (scores move by up to ~0.04, see docs/models.md); ranked apart from f32
               "one process, bf16": ({"cpu_precision": "bf16"}, False)}
THEIR_SERVERS = {"one process": (2, False), "2 workers": (1, True)}  # (cpu_num_threads, use_multiprocess)
# 12-MP JPEGs made from shared images: (name, source, target width, height)
BIG_JPEGS = (("photo, wangzai.jpg upscaled", "misc/wangzai.jpg", 3990, 3010),
             ("document, img_rot0_demo.jpg upscaled", "orientation/img_rot0_demo.jpg", 4000, 3000))
TARGETS = {"one process / 2 workers": 0.9, "server CPU / raw CPU": 2.0, "p99 ms one process": 50.0,
           "12-MP reduced speed-up": 4.0}


@dataclasses.dataclass(frozen=True)
class Mode:
    seconds: float  # per served / in-process cell
    warmup_seconds: float
    predict_cls_images: int
    decode_repeats: int


MODES = {"quick": Mode(3.0, 1.0, 80, 5), "full": Mode(15.0, 3.0, 400, 15)}


# ---- in process ----------------------------------------------------------------------------

def image_bytes(names):
    return [(SHARED_IMAGES / name).read_bytes() for name in names]


def timed_loop(step, images_per_step, seconds):
    """Run step() for `seconds` -> (img/s, CPU ms per image of this process)."""
    step()
    done, cpu, start = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += images_per_step
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"img_per_s": done / wall, "cpu_ms_per_image": cpu * 1000 / done}


def raw_rows(settings, tensor, seconds):
    """Per backend, batch 1 and 8 with the serving threads at fp32 (what a predictor made on its
    own runs `auto` at); OpenVINO batch 8 also on 1 thread and at bf16 (what `auto` may pick)."""
    rows = {}
    cells = [(backend, batch, None, None) for backend in BACKENDS for batch in (1, 8)]
    cells += [("openvino", 8, 1, None), ("openvino", 8, None, "bf16"), ("openvino", 8, 1, "bf16")]
    for backend, batch, threads, precision in cells:
        params = dataclasses.replace(settings.predictor, backend=backend, cpu_threads=threads or cpu_share(),
                                     cpu_precision=precision or settings.predictor.cpu_precision)
        name = (f"raw predictor {backend}, batch {batch}" + (f", {threads} thread" if threads else "") +
                (f", {precision}" if precision else ""))
        try:
            predictor = create_predictor(settings.model_path, params, batch)
            feeds = {predictor.input_names[0]: np.stack([tensor] * batch)}
            rows[name] = {"backend": backend, **timed_loop(lambda: predictor.run(feeds), batch, seconds)}
        except (ModelError, ImportError, OSError, RuntimeError, ValueError) as err:
            rows[name] = {"backend": backend, "unavailable": f"not available: {err}".splitlines()[0][:160]}
    return rows


def engine_row(settings, data, seconds):
    engine = build_classifier(dataclasses.replace(settings, serving=dataclasses.replace(settings.serving, batch_size=8)))
    batch = [data[i % len(data)] for i in range(8)]
    return {"backend": choose_backend(settings.model_path, settings.predictor),
            **timed_loop(lambda: engine.classify(batch), 8, seconds)}


def parity_rows(spec, paths):
    """Each available backend against PaddleClas 2.6.0's own deploy code (exact decoding)."""
    try:
        probe = build_classifier(load_classifier_settings({"preset": spec["preset"]}, {"reduced_decode": False}))
        data = [p.read_bytes() for p in paths]
        if spec["preset"] == "text_line_orientation":  # PaddleClas has no ops for it: our tensors
            reference = reference_scores(tensors=np.stack([float_tensor(probe, d) for d in data]),
                                         preset=spec["preset"])
        else:
            reference = reference_scores([str(p) for p in paths], preset=spec["preset"])
    except (PaddleClasReferenceError, OSError) as err:
        return {"reference": f"not available: {err}".splitlines()[0][:200]}
    expected = np.array([r["probabilities"] for r in reference])
    rows = {}
    for backend in BACKENDS:
        try:
            engine = build_classifier(load_classifier_settings({"preset": spec["preset"]},
                                                               {"reduced_decode": False, "backend": backend}))
            got = np.stack(engine.predict_tensors([engine.image_to_tensor(d) for d in data]))
        except (ModelError, ImportError, OSError, RuntimeError, ValueError) as err:
            rows[backend] = {"unavailable": f"not available: {err}".splitlines()[0][:160]}
            continue
        rows[backend] = {"images": len(data),
                         "top1_same": int(np.sum(got.argmax(1) == expected.argmax(1))),
                         "ranking_same": int(np.sum(np.all(np.argsort(-got, 1) == np.argsort(-expected, 1), 1))),
                         "max_abs_delta": float(np.max(np.abs(got - expected)))}
    return rows


def big_jpeg_rows(repeats):
    """12-MP JPEGs (upscaled shared images, quality 95): decode + preprocess, reduced vs full."""
    engines = {reduced: build_classifier(load_classifier_settings({"preset": "text_image_orientation"},
                                                                  {"reduced_decode": reduced}))
               for reduced in (False, True)}
    rows = {}
    for name, source, width, height in BIG_JPEGS:
        pixels = cv2.resize(cv2.imread(str(SHARED_IMAGES / source)), (width, height), interpolation=cv2.INTER_CUBIC)
        data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        row = {"size": f"{width}x{height}", "jpeg_bytes": len(data)}
        for label, engine in (("full", engines[False]), ("reduced", engines[True])):
            tensor = engine.image_to_tensor(data)
            times = []
            for _ in range(repeats):  # the fastest repeat: least disturbed by other load
                start = time.perf_counter()
                tensor = engine.image_to_tensor(data)
                times.append(time.perf_counter() - start)
            row[f"{label}_ms"] = min(times) * 1000
            row[f"{label}_scores"] = engine.predict_tensors([tensor])[0].tolist()
        row["speedup"] = row["full_ms"] / row["reduced_ms"]
        row["top1_same"] = int(np.argmax(row["full_scores"])) == int(np.argmax(row["reduced_scores"]))
        row["max_abs_score_delta"] = float(np.max(np.abs(np.subtract(row["full_scores"], row["reduced_scores"]))))
        rows[name] = row
    return rows


# ---- one model -------------------------------------------------------------------------------

def bench_model(wrk, spec, mode, paddleclas_src):
    settings = load_classifier_settings({"preset": spec["preset"]})
    engine = build_classifier(settings)
    data = image_bytes(spec["images"])
    print(f"{spec['title']}: in process ...", flush=True)
    rows = raw_rows(settings, float_tensor(engine, data[0]), mode.seconds)
    rows["engine in process: decode + preprocess + infer, batch 8"] = engine_row(settings, data, mode.seconds)
    with tempfile.TemporaryDirectory(prefix="bench_") as workdir:
        rows.update(served_rows(wrk, spec, data, engine, workdir, mode, paddleclas_src))
    print(f"{spec['title']}: PaddleClas predict_cls.py ...", flush=True)
    try:
        offline = time_predict_cls([str(SHARED_IMAGES / n) for n in spec["images"]], preset=spec["preset"],
                                   total_images=mode.predict_cls_images, batch_size=8, cpu_threads=2)
        rows["PaddleClas predict_cls.py offline, batch 8, 2 threads"] = {
            "img_per_s": offline["img_per_s"], "note": offline["preprocess_note"]}
    except PaddleClasReferenceError as err:
        rows["PaddleClas predict_cls.py offline, batch 8, 2 threads"] = {
            "unavailable": f"not available: {err}".splitlines()[0][:200]}
    parity_images = sorted({SHARED_IMAGES / n for n in spec["images"]} if spec["preset"] == "text_line_orientation" else
                           [p for p in SHARED_IMAGES.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    served_backend = choose_backend(settings.model_path, settings.predictor)
    return {"title": spec["title"], "preset": spec["preset"], "served_backend": served_backend, "rows": rows,
            "parity": parity_rows(spec, parity_images),
            "ratios": ratios(rows, served_backend, spec["target_vs_paddleclas"])}


def ratios(rows, backend, target_vs_paddleclas):
    def rate(name):
        return rows.get(name, {}).get("img_per_s")

    out = {}
    encoded = {n: r["img_per_s"] for n, r in rows.items()
               if n.startswith("ours") and n.endswith(ENCODED) and "img_per_s" in r}
    theirs = {n: r["img_per_s"] for n, r in rows.items() if n.startswith("PaddleClas hub") and "img_per_s" in r}
    for label, ours in (("ours best, encoded images", encoded),
                        ("ours best, one encoded image per request", {n: v for n, v in encoded.items()
                                                                      if not n.endswith(ENCODED[2])})):
        if ours and theirs:
            best_ours, best_theirs = max(ours, key=ours.get), max(theirs, key=theirs.get)
            out[f"{label} / PaddleClas hub best"] = {"value": ours[best_ours] / theirs[best_theirs],
                                                     "target": f">= {target_vs_paddleclas}",
                                                     "of": f"{best_ours} / {best_theirs}"}
    for protocol in ENCODED:
        for one_process in ("one process", "one process, cpu_threads 1"):
            one, two = rate(f"ours, {one_process}, {protocol}"), rate(f"ours, 2 workers, {protocol}")
            if one and two:
                out[f"{one_process} / 2 workers ({protocol})"] = {
                    "value": one / two, "target": f">= {TARGETS['one process / 2 workers']}"}
    raw_rows_cpu = {n: r["cpu_ms_per_image"] for n, r in rows.items()
                    if n.startswith(f"raw predictor {backend}, batch 8") and "cpu_ms_per_image" in r}
    if raw_rows_cpu:  # the cheapest raw run is the denominator: the strictest ratio
        cheapest = min(raw_rows_cpu, key=raw_rows_cpu.get)
        for name, row in rows.items():
            if name.startswith("ours") and "server_cpu_ms_per_image" in row:
                out[f"server CPU / raw CPU per image, {name}"] = {
                    "value": row["server_cpu_ms_per_image"] / raw_rows_cpu[cheapest],
                    "target": f"<= {TARGETS['server CPU / raw CPU']}", "of": cheapest}
    for protocol in ENCODED[:2]:
        p99 = rows.get(f"ours, one process, {protocol}", {}).get("p99_ms")
        if p99 is not None:
            out[f"p99 ms, {CLIENTS} clients, one process, {protocol}"] = {
                "value": p99, "target": f"<= {TARGETS['p99 ms one process']}"}
    return out


# ---- report ------------------------------------------------------------------------------------

def fmt(value, spec):
    width = int(spec.split(".")[0])
    return format(value, spec) if isinstance(value, (int, float)) else "-".rjust(width)


def print_report(results):
    mode = results["mode"]
    print(f"\n{CLIENTS} clients (wrk -t1 -c{CLIENTS}), {mode['seconds']} s per cell, "
          f"{results['machine']['cpus']} CPUs, load average at start {results['machine']['loadavg_start']}")
    for out in results["models"].values():
        print(f"\n== {out['title']} (served backend: {out['served_backend']})")
        print(f"{'':66} {'img/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/img':>10}  other load")
        for name, row in out["rows"].items():
            if "unavailable" in row:
                print(f"{name:66} {' '.join(row['unavailable'].split())}")
                continue
            cpu = row.get("server_cpu_ms_per_image", row.get("cpu_ms_per_image"))
            other = (f"load {row['loadavg_before'][0]:.2f} before, others {row['other_cpu_cores']:.2f} cores, "
                     f"wrk {row['wrk_cpu_cores']:.2f}" if "loadavg_before" in row else row.get("note", ""))
            bad = row.get("bad_answers", 0) + row.get("socket_errors", 0)
            flag = f"  {bad} BAD ANSWERS/ERRORS" if bad else ""
            print(f"{name:66} {fmt(row['img_per_s'], '7.0f')} {fmt(row.get('p50_ms'), '7.1f')} "
                  f"{fmt(row.get('p99_ms'), '7.1f')} {fmt(cpu, '10.2f')}  {other}{flag}")
        for backend, row in out["parity"].items():
            if "unavailable" in row:
                print(f"parity with PaddleClas 2.6.0, {backend}: {row['unavailable']}")
            else:
                print(f"parity with PaddleClas 2.6.0, {backend}: top-1 same {row['top1_same']}/{row['images']}, "
                      f"ranking same {row['ranking_same']}/{row['images']}, max |d prob| {row['max_abs_delta']:.1e}")
        for name, ratio in out["ratios"].items():
            print(f"ratio {name}: {ratio['value']:.2f} (target {ratio['target']})" +
                  (f"  [{ratio['of']}]" if "of" in ratio else ""))
    print(f"\n== 12-MP JPEG, PULC preprocessing: decode + preprocess, fastest of {mode['decode_repeats']} "
          f"(target reduced >= {TARGETS['12-MP reduced speed-up']}x faster, same top-1)")
    for name, row in results["big_jpeg"].items():
        print(f"{name} ({row['size']}, {row['jpeg_bytes'] // 1000} kB): full {row['full_ms']:.1f} ms, "
              f"reduced {row['reduced_ms']:.1f} ms, x{row['speedup']:.1f}, top-1 same {row['top1_same']}, "
              f"max |d score| {row['max_abs_score_delta']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short cells (~3 s): the whole bench in a few minutes")
    parser.add_argument("--seconds", type=float, help="seconds per cell (overrides the mode's)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--paddleclas-src", type=Path, help="a PaddleClas source tree: adds its hub module's rows")
    args = parser.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    if args.seconds:
        mode = dataclasses.replace(mode, seconds=args.seconds)
    if args.paddleclas_src and not (args.paddleclas_src / "deploy" / "hubserving" / "clas").is_dir():
        parser.error(f"--paddleclas-src {args.paddleclas_src}: no deploy/hubserving/clas in it")
    # SIGTERM unwinds like Ctrl-C, so servers started in their own sessions are stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    wrk = find_wrk()
    if wrk is None:
        raise SystemExit("wrk is not installed: make system-packages (apt-get install wrk), the bench's load generator")
    results = {"machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
               "mode": dataclasses.asdict(mode), "clients": CLIENTS,
               "paddleclas_hub": paddleclas_hub.environment_note(args.paddleclas_src) if args.paddleclas_src else None,
               "models": {key: bench_model(wrk, MODELS[key], mode, args.paddleclas_src) for key in args.models},
               "big_jpeg": big_jpeg_rows(mode.decode_repeats)}
    results["machine"]["loadavg_end"] = loadavg()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print_report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten: {RESULTS / 'throughput.json'}")


if __name__ == "__main__":
    main()
