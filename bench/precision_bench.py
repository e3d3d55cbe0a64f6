"""f32 / bf16 / INT8 on this CPU: `python -m bench.precision_bench` (in `make bench`). One run.

For each served model (PULC text_image_orientation, the text-line classifier, EfficientNet-Lite2
features at 224, U²-Net-p saliency at 256), on the shared real photos: the model at fp32 and bf16
and an NNCF INT8 model made here with clas-quantize's code (calibrated on 3 of every 4 photos, its
float parts at fp32); for U²-Net-p also INT8 with its finest decoder stage kept in float.
Each is run raw (float tensors in, the serving thread count) twice: through the project's
predictor (create_predictor) and through plain OpenVINO (compile_model on the same file with the
same properties), in interleaved rounds, median batch time. Agreement with fp32 on all shared
photos: top-1 agreement and max |Δprob| (classifiers), min cosine (features), mean/min mask IoU
(saliency). Names the CPU (model, bf16/AMX/VNNI flags) and the load. Writes
bench/results/precision.json.

    python -m bench.precision_bench --rounds 5
"""
import argparse
import json
import os
import statistics
import time
from types import SimpleNamespace

import numpy as np

from clas_system.quantize_cli import U2NETP_FINEST_DECODER, inputs, split_images, target_for
from clas_system.runtime.openvino_runtime import program_file
from clas_system.runtime.predictor import create_predictor
from clas_system.runtime.quantization import quantize
from harness.payloads import SHARED_IMAGES
from harness.process_stats import loadavg
from params.common import PredictorParams

from . import RESULTS

MODELS = {"PULC text_image_orientation": ("text_image_orientation", 8),
          "text-line classifier": ("text_line_orientation", 8),
          "EfficientNet-Lite2 features": ("efficientnet_lite2", 8),
          "U²-Net-p saliency 256": ("u2netp", 1)}
CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def cpu_named():
    """'<model name> (family/model), flags: ...' from /proc/cpuinfo."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    flags = [flag for flag in CPU_FLAGS if flag in fields.get("flags", "").split()]
    return (f"{fields.get('model name')} (family {fields.get('cpu family')} model {fields.get('model')}), "
            f"{os.cpu_count()} CPUs, flags: {' '.join(flags) or 'none of ' + ' '.join(CPU_FLAGS)}")


def plain_openvino(model, precision, threads):
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                      "INFERENCE_NUM_THREADS": threads,
                                                      "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    return lambda batch: compiled(batch)[0]


def project_predictor(path, precision, threads):
    predictor = create_predictor(path, PredictorParams(backend="openvino", cpu_precision=precision,
                                                       cpu_threads=threads))
    return lambda batch: predictor.run({predictor.input_names[0]: batch})[0]


def median_ms(runners, batch, rounds):
    for run in runners.values():
        run(batch)
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def int8_models(preset, target, calibration):
    import openvino as ov

    model = ov.Core().read_model(program_file(target.model_path))
    made = {"INT8": quantize(model, calibration)}
    if preset == "u2netp":  # the first quantized everything; clas-quantize's default keeps this in float
        made["INT8, finest decoder in float"] = quantize(model, calibration, keep_float=[U2NETP_FINEST_DECODER])
    return made


def save_ir(model, folder):
    import openvino as ov

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.xml")
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def bench_model(title, preset, batch_size, rounds, threads, workdir):
    target = target_for(SimpleNamespace(preset=preset, input_size=None))
    calibration_files, _ = split_images(str(SHARED_IMAGES), None)
    every = inputs(target, sorted(str(p) for p in SHARED_IMAGES.rglob("*") if p.suffix.lower() in
                                  (".jpg", ".jpeg", ".png")))
    files = {"fp32": target.model_path}
    files.update({name: save_ir(model, os.path.join(workdir, preset, str(i))) for i, (name, model)
                  in enumerate(int8_models(preset, target, inputs(target, calibration_files)).items())})
    variants = [("f32", "fp32", "f32", files["fp32"]), ("bf16", "bf16", "bf16", files["fp32"])]
    variants += [(name, "fp32", "f32", path) for name, path in files.items() if name != "fp32"]
    batch = np.concatenate([every[0]] * batch_size)
    runners = {}
    for name, precision, hint, path in variants:
        runners[(name, "project")] = project_predictor(path, precision, threads)
        runners[(name, "openvino")] = plain_openvino(program_file(path), hint, threads)
    ms = median_ms(runners, batch, rounds)
    reference = [runners[("f32", "openvino")](x) for x in every]
    rows = []
    for name, *_ in variants:
        outputs = [runners[(name, "openvino")](x) for x in every]
        rows.append({"model": title, "variant": name, "batch": batch_size,
                     "project_ms": round(ms[(name, "project")], 2), "openvino_ms": round(ms[(name, "openvino")], 2),
                     "img_s": round(batch_size * 1000 / ms[(name, "project")], 1),
                     "vs_f32": round(ms[("f32", "project")] / ms[(name, "project")], 2),
                     "project_vs_openvino": round(ms[(name, "openvino")] / ms[(name, "project")], 2),
                     "agreement": target.compare([r[0] for r in reference], [o[0] for o in outputs])})
    return rows


def agreement_text(report):
    if "top1_agreement" in report:
        return f"top-1 {report['top1_agreement']:.3f}, max Δp {report['max_abs_prob_change']:.3f}"
    if "min_cosine" in report:
        return f"cosine min {report['min_cosine']:.3f}, recall@1 {report['recall_at_1']:.2f}"
    return f"mask IoU mean {report['mean_mask_iou']:.2f} min {report['min_mask_iou']:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.precision_bench")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    import openvino as ov
    import tempfile

    header = {"cpu": cpu_named(), "openvino": ov.get_version(), "threads": args.threads,
              "loadavg_before": loadavg()}
    print(f"# {header['cpu']}; OpenVINO {header['openvino']}; {args.threads} threads; "
          f"load average before {header['loadavg_before']}")
    print("| model | variant | batch | ms/batch (project) | ms/batch (plain OpenVINO) | img/s | × f32 | "
          "project ÷ plain | agreement with f32 (23 shared photos) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for title in args.models:
            preset, batch_size = MODELS[title]
            for row in bench_model(title, preset, batch_size, args.rounds, args.threads, workdir):
                rows.append(row)
                print(f"| {row['model']} | {row['variant']} | {row['batch']} | {row['project_ms']} | "
                      f"{row['openvino_ms']} | {row['img_s']} | {row['vs_f32']} | {row['project_vs_openvino']} | "
                      f"{agreement_text(row['agreement'])} |", flush=True)
    header["loadavg_after"] = loadavg()
    print(f"load average after {header['loadavg_after']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "precision.json").write_text(json.dumps({**header, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
