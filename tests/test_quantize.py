"""clas-quantize: NNCF INT8 of a real packaged model calibrated on real photos, its record, serving
it by pointing model_dir at the folder (the preset's preprocessing and labels kept), and the
refusal when the INT8 model no longer agrees with the float one."""
import json
import os
import subprocess
import sys

import pytest
import requests

from clas_system import Client
from clas_system.runtime.model_files import file_sha256, model_files
from clas_system.runtime.precision import preferred
from clas_system.runtime.quantization import RECORD_FILE, read_record
from clas_system.tasks.classify import build_classifier
from harness.payloads import SHARED_IMAGES
from params import load_classifier_settings

PULC = "text_image_orientation"

pytest.importorskip("nncf", reason="clas-quantize needs the [quantize] extra: pip install '.[quantize]'")


def shared_files():
    return sorted(str(p) for p in SHARED_IMAGES.rglob("*") if p.is_file() and p.suffix.lower() != ".md")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The shared real photos linked into one folder (calibration: 3 of every 4, report: the 4th)."""
    folder = tmp_path_factory.mktemp("photos")
    for path in shared_files():
        os.symlink(path, folder / os.path.relpath(path, SHARED_IMAGES).replace(os.sep, "_"))
    return folder


def clas_quantize(*args):
    return subprocess.run([sys.executable, "-m", "clas_system.quantize_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def int8_pulc(photos, tmp_path_factory):
    output = tmp_path_factory.mktemp("int8") / "pulc"
    done = clas_quantize("--preset", PULC, "--images", photos, "--output", output)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_the_int8_folder_records_where_it_came_from(int8_pulc):
    assert sorted(os.listdir(int8_pulc)) == ["model.bin", "model.xml", RECORD_FILE]
    record = read_record(int8_pulc)
    source = load_classifier_settings({"preset": PULC}).model_path
    assert record["source"] == source and record["source_sha256"] == file_sha256(source)
    assert record["calibration"]["images"] + record["held_out"]["images"] == len(shared_files())
    assert any(step.startswith("CropImage(size=(224, 224))") for step in record["preprocessing"])
    assert record["kept_in_float"] == ["MatMul.0"]  # NNCF leaves the classifier head in float
    assert record["accuracy"]["top1_agreement"] == 1.0 and record["accuracy"]["passed"]
    assert record["options"]["mixed"] and not record["forced"]
    # a gallery's fingerprint hashes the model's files: an IR's weights too
    assert model_files(str(int8_pulc)) == [str(int8_pulc / "model.xml"), str(int8_pulc / "model.bin")]


def test_served_int8_model_answers_top1_like_fp32_on_every_shared_image(int8_pulc, server_factory):
    float_engine = build_classifier(load_classifier_settings({"preset": PULC}))
    images = [open(path, "rb").read() for path in shared_files()]
    expected = [result["class_ids"][0] for result in float_engine.classify(images)]
    server = server_factory(modules={"clas_system": {"preset": PULC, "model_dir": str(int8_pulc),
                                                     "cpu_precision": "auto"}})
    results = Client(server.url).classify(images)
    assert [r["class_ids"][0] for r in results] == expected
    assert {r["label_names"][0] for r in results} <= {"0", "90", "180", "270"}  # the preset's labels
    models = requests.get(f"{server.url}/ready", timeout=30).json()["modules"]["clas_system"]["models"]
    # auto runs an INT8 model's float parts at fp32: with bf16 two of these answers changed
    assert models == {"pulc": {"precision": "fp32", "chosen_by": "only candidate"}}


def test_below_the_agreement_nothing_is_written(photos, tmp_path):
    """Plain post-training INT8 breaks U²-Net-p's saliency mask (mean IoU ~0.4 against float)."""
    output = tmp_path / "saliency"
    done = clas_quantize("--preset", "u2netp", "--quantize-all", "--input-size", 128, "--images", photos,
                         "--output", output)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "refused: agreement" in done.stderr and "below 0.9" in done.stderr
    assert json.loads(done.stdout[done.stdout.index("{"):])["passed"] is False
    assert not output.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--model-dir", "m"], "--model-dir needs --inference-config"),
    (["--preset", PULC, "--min-agreement", "1.5"], "--min-agreement: 1.5 is not in (0, 1]"),
])
def test_bad_arguments_name_the_problem(tmp_path, args, message):
    done = clas_quantize(*args, "--images", tmp_path, "--output", tmp_path / "out")
    assert done.returncode == 2 and message in done.stderr


def test_a_folder_without_images_is_named(tmp_path):
    done = clas_quantize("--preset", PULC, "--images", tmp_path, "--output", tmp_path / "out")
    assert done.returncode == 1 and f"{tmp_path}: no images" in done.stderr


def test_auto_times_an_int8_model_beside_fp32_and_bf16(int8_pulc):
    engine = build_classifier(load_classifier_settings({"preset": PULC, "predictor": {
        "cpu_precision": "auto", "int8_model_dir": str(int8_pulc)}}))
    images = [open(path, "rb").read() for path in shared_files()[:4]]
    engine.classify(images)
    choice = engine.predictor.precision
    assert choice.chosen_by == "measured" and {"fp32", "int8"} <= set(choice.batch_ms)
    assert choice.precision == preferred(choice.batch_ms)
