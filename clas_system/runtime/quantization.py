"""Post-training INT8 quantization with NNCF (the `[quantize]` extra) into an OpenVINO IR, and
the figures that say whether the INT8 model still answers like the float one.

An INT8 model is a folder: `model.xml` + `model.bin` (the IR, served by pointing `model_dir` at
the folder) and `quantization.json`, the record: the source file and its sha256, the
preprocessing, the calibration images, the NNCF options, the layers left in float and the
accuracy report. The folder is written beside its destination and renamed into place, so a
server never reads half of one.
"""
import json
import os
import shutil
import tempfile

import numpy as np

from ..errors import ModelError

IR_FILE = "model.xml"
RECORD_FILE = "quantization.json"
# Ops whose activation input NNCF quantizes; any of these not fed by a FakeQuantize runs in float.
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def nncf_module():
    try:
        import nncf
    except ImportError as err:
        raise ModelError("INT8 quantization needs NNCF: pip install 'paddleclas-serving[quantize]' "
                         "(or pip install nncf)") from err
    return nncf


def quantize(model, calibration, keep_float=(), mixed=True, fast_bias_correction=True):
    """An ov.Model and calibration inputs (each a batch for its first input) -> the INT8 ov.Model.
    `keep_float`: regular expressions of node names NNCF leaves in float (its ignored scope);
    `mixed`: asymmetric activations (NNCF's MIXED preset; else PERFORMANCE, symmetric): on the
    shared photos it kept the PULC model's top-1 where symmetric changed 2 of 23."""
    nncf = nncf_module()
    options = {"subset_size": len(calibration), "fast_bias_correction": fast_bias_correction,
               "preset": nncf.QuantizationPreset.MIXED if mixed else nncf.QuantizationPreset.PERFORMANCE}
    if keep_float:
        options["ignored_scope"] = nncf.IgnoredScope(patterns=list(keep_float), validate=False)
    return nncf.quantize(model, nncf.Dataset(list(calibration)), **options)


def float_layers(model):
    """Names of the weighted layers whose activations are not quantized (left in float)."""
    kept = []
    for node in model.get_ordered_ops():
        if node.get_type_name() in WEIGHTED_OPS:
            source = node.input_value(0).get_node()
            if source.get_type_name() != "FakeQuantize":
                kept.append(node.get_friendly_name())
    return kept


def is_quantized(model):
    return any(node.get_type_name() == "FakeQuantize" for node in model.get_ordered_ops())


def write_int8_folder(model, record, folder):
    """The IR and its record written into `folder` (replacing one there) without a reader ever
    seeing a partial folder."""
    import openvino as ov

    folder = os.path.abspath(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.partial-")
    try:
        ov.save_model(model, os.path.join(staging, IR_FILE), compress_to_fp16=False)
        with open(os.path.join(staging, RECORD_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, default=str)
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o644)
        os.chmod(staging, 0o755)
        old = None
        if os.path.exists(folder):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.old-")
            os.replace(folder, os.path.join(old, "previous"))
        os.replace(staging, folder)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_record(folder):
    with open(os.path.join(folder, RECORD_FILE), encoding="utf-8") as f:
        return json.load(f)


def classifier_agreement(reference, other):
    """Two [N, classes] probability arrays -> top-1 agreement and the largest probability change."""
    reference, other = np.asarray(reference), np.asarray(other)
    return {"images": len(reference),
            "top1_agreement": float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1))),
            "max_abs_prob_change": float(np.abs(reference - other).max())}


def feature_agreement(reference, other):
    """Two [N, dim] embedding arrays -> cosine to the float embedding (min, mean) and recall@1:
    the share of INT8 embeddings whose nearest float embedding is their own image's."""
    a = np.asarray(reference, np.float64)
    b = np.asarray(other, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cosine = np.sum(a * b, axis=1)
    nearest = (b @ a.T).argmax(axis=1)
    return {"images": len(a), "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "recall_at_1": float(np.mean(nearest == np.arange(len(a))))}


def mask_agreement(reference_masks, other_masks):
    """Boolean masks per image -> IoU of each INT8 mask with the float one (mean, min)."""
    ious = [float((a & b).sum() / max((a | b).sum(), 1)) for a, b in zip(reference_masks, other_masks)]
    return {"images": len(ious), "mean_mask_iou": float(np.mean(ious)), "min_mask_iou": float(np.min(ious))}
