"""Accuracy against PaddleClas itself: the `paddleclas==2.6.0` wheel's own deploy/python
preprocessing, Predictor and Topk (run in .venv-paddleclas by harness/paddleclas_reference.py)
against our served path on every backend, on the real shared images: top-k order identical
and every probability within 1e-4.

Decoding is full size (`reduced_decode: false`, the setting for bit-exact parity). Each model
runs on the backends that can read it: the PULC model ships as ONNX only (ONNX Runtime,
OpenVINO), the text-line model as a Paddle folder (Paddle Inference, OpenVINO); paddle2onnx
2.1.0's export of the text-line model does not load in ONNX Runtime (a Concat of scalars), so
there is no ONNX copy of it to test. PaddleClas's deploy ops cannot
express the text-line preprocessing (aspect-kept resize, pad after normalising, BGR): for that
preset PaddleClas gets our float tensors and runs its Predictor and Topk on them, and our
served path must give the same scores from the image files.
"""
import numpy as np
import pytest

from clas_system.ops.decode import decode_image
from clas_system.tasks.classify import build_classifier
from harness.paddleclas_reference import reference_scores
from harness.payloads import SHARED_IMAGES
from params import load_classifier_settings

pytestmark = pytest.mark.slow  # PaddleClas's reference runs

PULC = "text_image_orientation"
TEXT_LINE = "text_line_orientation"
FOLDERS = ("imagenet", "orientation", "textline", "product")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def image_files():
    files = sorted(p for folder in FOLDERS for p in (SHARED_IMAGES / folder).rglob("*") if p.is_file())
    assert len(files) >= 10
    return files


def served_engine(preset, backend):
    return build_classifier(load_classifier_settings({"preset": preset, "predictor": {"backend": backend},
                                                      "serving": {"reduced_decode": False}}))


def served_probabilities(engine, files):
    """What a file-protocol request computes: decode + per-image prepare, batched run."""
    return np.stack(engine.predict_tensors([engine.image_to_tensor(f.read_bytes(), f.name) for f in files]))


def assert_parity(ours, reference):
    assert np.array_equal(np.argsort(-ours, axis=1, kind="stable"), np.argsort(-reference, axis=1, kind="stable"))
    assert np.abs(ours - reference).max() <= TOLERANCE


@pytest.fixture(scope="module")
def pulc_reference(image_files):
    results = reference_scores([str(f) for f in image_files], preset=PULC)
    return np.array([r["probabilities"] for r in results])


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_pulc_matches_paddleclas_deploy(backend, image_files, pulc_reference):
    engine = served_engine(PULC, backend)
    assert engine.predictor.image_input is not None  # images normalised in the graph
    assert_parity(served_probabilities(engine, image_files), pulc_reference)
    # PaddleClas's ndarray protocol: its clients send float tensors to the unmodified graph
    tensors = [engine.preprocess(decode_image(f.read_bytes())) for f in image_files]
    assert_parity(np.stack(engine.predict_tensors(tensors)), pulc_reference)


@pytest.fixture(scope="module")
def text_line_reference(image_files):
    engine = served_engine(TEXT_LINE, "paddle")
    tensors = np.stack([engine.preprocess(decode_image(f.read_bytes(), to_rgb=False)) for f in image_files])
    return np.array([r["probabilities"] for r in reference_scores(tensors=tensors, preset=TEXT_LINE)])


@pytest.mark.parametrize("backend", ["paddle", "openvino"])
def test_text_line_matches_paddleclas_predictor(backend, image_files, text_line_reference):
    engine = served_engine(TEXT_LINE, backend)
    assert engine.predictor.backend == backend
    assert_parity(served_probabilities(engine, image_files), text_line_reference)
