"""`clas-quantize`: a served model made INT8 by NNCF post-training quantization, calibrated on
your images through the module's own preprocessing, checked against the float model on images
it was not calibrated on, and written as an OpenVINO IR folder only if it still agrees.

    clas-quantize --preset text_image_orientation --images photos/ --output int8/pulc
    clas-quantize --model-dir inference/ --inference-config inference_cls.yaml --images photos/ --output int8/mine
    clas-quantize --preset efficientnet_lite2 --images photos/ --output int8/features   # rec_system features
    clas-quantize --preset u2netp --images photos/ --output int8/saliency              # mainbody detector

Serve it by pointing the module's `model_dir` at the output folder, keeping the preset (its
preprocessing and labels stay): `{"preset": "text_image_orientation", "model_dir": "int8/pulc"}`.
The report compares on `--holdout DIR` (default: every 4th image of --images, left out of the
calibration): top-1 agreement and the largest probability change for a classifier, cosine and
recall@1 against the float embeddings for a feature model, mask IoU for the saliency detector.
Below `--min-agreement` (top-1 agreement, mean cosine or mean mask IoU) nothing is written and
the exit status is 2, unless `--force`.
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np

from params.classifier import load_classifier_settings
from params.detector import load_detector_settings
from params.presets import CLASSIFIER_PRESETS
from params.recognition import FEATURE_PRESETS, load_recognition_settings
from params.schema import ParamsError

from .errors import ClasSystemError
from .ops.decode import decode_image
from .ops.preprocess import build_pipeline
from .runtime.derived_models import prepare_derived_model
from .runtime.model_files import file_sha256
from .runtime.openvino_runtime import program_file
from .runtime.quantization import (classifier_agreement, feature_agreement, float_layers, mask_agreement, quantize,
                                   write_int8_folder)
from .tasks.classify import decode_settings
from .tasks.detect.saliency import normalised_map
from .tasks.detect.saliency import preprocess as saliency_preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SALIENCY_PRESET = "u2netp"
# U²-Net-p's finest decoder stage (stage1d, ONNX nodes Conv_787 to Conv_920), after the upsampling
# into full resolution: quantized, it breaks the mask (mean IoU 0.61 against float on the shared
# photos); kept in float 0.97. Its heads, its finest encoder stage or the Resize/Concat ops kept in
# float did not help.
U2NETP_FINEST_DECODER = r"Conv_(78[7-9]|79[0-9]|8[0-9][0-9]|9[01][0-9]|920)/WithoutBiases"
PRESET_KEEP_FLOAT = {SALIENCY_PRESET: [U2NETP_FINEST_DECODER]}
DEFAULT_MIN_AGREEMENT = {"classifier": 0.99, "features": 0.98, "saliency": 0.9}
HOLDOUT_EVERY = 4


class Target:
    """What is quantized: its kind, model file, per-image input (HWC RGB uint8 -> [1, ...] float32),
    decoding, the float outputs -> what the report compares, and the preprocessing as recorded."""

    def __init__(self, kind, model_path, to_input, to_rgb, preprocessing, compare):
        self.kind, self.model_path, self.to_input = kind, model_path, to_input
        self.to_rgb, self.preprocessing, self.compare = to_rgb, preprocessing, compare


def pipeline_input(ops):
    pipeline = build_pipeline(ops)
    return lambda image: pipeline.to_batch([pipeline.prepare(image)])


def classifier_target(settings):
    to_rgb, _ = decode_settings(settings.preprocess)
    return Target("classifier", settings.model_path, pipeline_input(settings.preprocess), to_rgb,
                  [repr(op) for op in settings.preprocess], classifier_agreement)


def target_for(args):
    """The Target named by --preset, or by --model-dir/--inference-config (a classifier)."""
    if args.preset in FEATURE_PRESETS:
        feature = load_recognition_settings({"feature": {"preset": args.preset}}).feature
        if feature.derived_from:
            prepare_derived_model(feature.derived_from)
        return Target("features", feature.model_path, pipeline_input(feature.preprocess), True,
                      [repr(op) for op in feature.preprocess], feature_agreement)
    if args.preset == SALIENCY_PRESET:
        settings = load_detector_settings({})  # the built-in saliency detector
        prepare_derived_model(settings.derived_from)
        side = args.input_size or settings.input_size

        def masks(outputs_list):
            return [normalised_map(out, side) >= settings.mask_threshold for out in outputs_list]

        return Target("saliency", settings.model_path, lambda image: saliency_preprocess(image, side).tensor[None],
                      True, [f"square {side} px, scaled by its maximum, ImageNet mean/std"],
                      lambda a, b: mask_agreement(masks(a), masks(b)))
    if args.preset is not None:
        settings = load_classifier_settings({"preset": args.preset})
    else:
        settings = load_classifier_settings({"preset": None, "model_dir": args.model_dir,
                                             "inference_config": args.inference_config})
    return classifier_target(settings)


def image_files(folder):
    found = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise ParamsError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or below it")
    return found


def split_images(images_dir, holdout_dir):
    """(calibration files, held-out files): --holdout's, else every HOLDOUT_EVERY-th image."""
    files = image_files(images_dir)
    if holdout_dir:
        return files, image_files(holdout_dir)
    held = files[HOLDOUT_EVERY - 1::HOLDOUT_EVERY]
    calibration = [f for f in files if f not in held]
    if not held or not calibration:
        raise ParamsError(f"{images_dir}: {len(files)} images; give at least {HOLDOUT_EVERY}, or a --holdout folder")
    return calibration, held


def inputs(target, files):
    decoded = []
    for path in files:
        with open(path, "rb") as f:
            decoded.append(target.to_input(decode_image(f.read(), path, to_rgb=target.to_rgb)))
    return decoded


def outputs(compiled, batches):
    return [np.asarray(compiled(batch)[0])[0] for batch in batches]


def agreement_figure(report):
    """What --min-agreement bounds: top-1 agreement, mean cosine to the float embedding, mean mask IoU."""
    return report.get("top1_agreement", report.get("mean_cosine", report.get("mean_mask_iou")))


def kept_in_float(args):
    """--keep-float's patterns, else the preset's (none with --quantize-all)."""
    if args.quantize_all:
        return []
    return list(args.keep_float) or PRESET_KEEP_FLOAT.get(args.preset, [])


def run(args):
    import openvino as ov

    target = target_for(args)
    calibration_files, held_files = split_images(args.images, args.holdout)
    core = ov.Core()
    model = core.read_model(program_file(target.model_path))
    keep_float = kept_in_float(args)
    int8 = quantize(model, inputs(target, calibration_files), keep_float=keep_float, mixed=not args.symmetric,
                    fast_bias_correction=not args.full_bias_correction)
    held = inputs(target, held_files)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    report = target.compare(outputs(core.compile_model(model, "CPU", config), held),
                            outputs(core.compile_model(int8, "CPU", config), held))
    minimum = args.min_agreement if args.min_agreement is not None else DEFAULT_MIN_AGREEMENT[target.kind]
    report.update(kind=target.kind, min_agreement=minimum, passed=agreement_figure(report) >= minimum)
    print(json.dumps(report, indent=1))
    if not report["passed"] and not args.force:
        print(f"refused: agreement {agreement_figure(report):.4f} is below {minimum} on {len(held)} held-out "
              f"images; nothing written (--force writes it anyway)", file=sys.stderr)
        return 2
    record = {"source": target.model_path, "source_sha256": file_sha256(program_file(target.model_path)),
              "kind": target.kind, "preprocessing": target.preprocessing,
              "calibration": {"folder": os.path.abspath(args.images), "images": len(calibration_files)},
              "held_out": {"folder": os.path.abspath(args.holdout or args.images), "images": len(held_files)},
              "options": {"keep_float": keep_float, "mixed": not args.symmetric,
                          "fast_bias_correction": not args.full_bias_correction},
              "kept_in_float": float_layers(int8), "accuracy": report, "forced": not report["passed"],
              "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    print(f"wrote {write_int8_folder(int8, record, args.output)}")
    return 0


def parser():
    p = argparse.ArgumentParser(prog="clas-quantize", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=(*CLASSIFIER_PRESETS, *FEATURE_PRESETS, SALIENCY_PRESET))
    source.add_argument("--model-dir", help="a classifier's Paddle folder or .onnx file (with --inference-config)")
    p.add_argument("--inference-config", help="its PaddleClas inference yaml (the preprocessing)")
    p.add_argument("--images", required=True, help="calibration photos, like the ones it will serve")
    p.add_argument("--holdout", help="photos for the accuracy report (default: every 4th of --images)")
    p.add_argument("--output", required=True, help="the INT8 folder to write")
    p.add_argument("--min-agreement", type=float, help="refuse below this top-1 agreement / mean cosine / mean "
                                                       "mask IoU (default 0.99 / 0.98 / 0.9)")
    p.add_argument("--force", action="store_true", help="write it even below --min-agreement")
    p.add_argument("--keep-float", action="append", default=[], metavar="REGEX",
                   help="node names NNCF leaves in float (repeatable; default for u2netp: its finest decoder stage)")
    p.add_argument("--quantize-all", action="store_true", help="no layer kept in float, not even the preset's")
    p.add_argument("--symmetric", action="store_true", help="symmetric activations too (NNCF's PERFORMANCE preset; "
                                                            "default MIXED: asymmetric activations)")
    p.add_argument("--full-bias-correction", action="store_true", help="NNCF's slower bias correction")
    p.add_argument("--input-size", type=int, help="u2netp: the square side (default: the detector's)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.model_dir and not args.inference_config:
        parser().error("--model-dir needs --inference-config (its preprocessing)")
    if args.min_agreement is not None and not 0 < args.min_agreement <= 1:
        parser().error(f"--min-agreement: {args.min_agreement} is not in (0, 1]")
    try:
        return run(args)
    except (ClasSystemError, ParamsError) as err:
        print(f"clas-quantize: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
