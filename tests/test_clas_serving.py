"""clas_system end to end: a real `hub serving start` subprocess, real packaged models, HTTP."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import run_to_exit

from clas_system import Client, ServerError
from clas_system.client.encode import ndarray_to_b64
from clas_system.ops.decode import decode_image
from clas_system.tasks.classify import build_classifier
from harness.hub_server import user_command
from harness.payloads import REPO, image_bytes, image_path
from params import load_classifier_settings

TEXT_UP = "textline/textline_orientation_test_0_0.png"
TEXT_DOWN = "textline/textline_orientation_test_1_0.png"
ROT0 = "orientation/img_rot0_demo.jpg"
ROT180 = "orientation/img_rot180_demo.jpg"


def rotated_jpeg(name, code):
    return cv2.imencode(".jpg", cv2.rotate(cv2.imread(image_path(name)), code))[1].tobytes()


@pytest.fixture(scope="module")
def default_server(server_factory):
    """The user's own command: `hub serving start -m clas_system -p PORT`."""
    return server_factory(command=user_command("clas_system"))


@pytest.fixture(scope="module")
def pulc_server(server_factory):
    return server_factory(modules={"clas_system": {"preset": "text_image_orientation", "batch_size": 4}})


def test_default_module_labels_text_lines(default_server):
    results = Client(default_server.url).classify([image_path(TEXT_UP), image_path(TEXT_DOWN)])
    assert [r["label_names"][0] for r in results] == ["0", "180"]
    assert all(r["scores"][0] > 0.99 for r in results)


def test_pulc_setting_labels_orientations(pulc_server):
    client = Client(pulc_server.url)
    images = [image_bytes(ROT0), image_bytes(ROT180), rotated_jpeg(ROT0, cv2.ROTATE_90_CLOCKWISE),
              rotated_jpeg(ROT0, cv2.ROTATE_90_COUNTERCLOCKWISE)]
    results = client.classify(images)
    assert [r["label_names"][0] for r in results] == ["0", "180", "90", "270"]
    assert all(r["scores"][0] > 0.85 for r in results)


def test_reference_ndarray_protocol_matches_file_protocol(pulc_server):
    settings = load_classifier_settings({"preset": "text_image_orientation"})
    engine = build_classifier(settings)
    names = [ROT0, ROT180]
    batch = np.stack([engine.preprocess(decode_image(image_bytes(n))) for n in names])
    text, revert = ndarray_to_b64(batch)
    body = pulc_server.post("clas_system", {"images": text, "revert_params": revert, "top_k": 2})
    assert body["status"] == "000", body
    reference = body["results"]["prediction"]
    files = Client(pulc_server.url).classify([image_path(n) for n in names], top_k=2)
    for ref, file_result in zip(reference, files):
        assert ref["class_ids"] == ref["clas_ids"] == file_result["class_ids"]
        assert ref["scores"] == pytest.approx(file_result["scores"], abs=1e-5)


def test_batch_of_ten_mixed_images_in_order(pulc_server):
    names = [ROT0, ROT180, "imagenet/ILSVRC2012_val_00006666.JPEG", TEXT_UP, "drink/youjia.jpeg",
             ROT180, "misc/coco_000000570688.jpg", ROT0, "product/query/anmuxi.jpg", "misc/0517_2715693311.jpg"]
    client = Client(pulc_server.url)
    together = client.classify([image_path(n) for n in names], top_k=4)
    one_by_one = [client.classify(image_path(n), top_k=4)[0] for n in names]
    assert len(together) == 10
    assert [r["label_names"][0] for r in together[:2]] == ["0", "180"]
    for a, b in zip(together, one_by_one):
        assert a["class_ids"] == b["class_ids"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_served_scores_equal_engine_scores(pulc_server, default_server):
    for server, params in ((pulc_server, {"preset": "text_image_orientation"}), (default_server, {})):
        engine = build_classifier(load_classifier_settings(params))
        names = [ROT0, ROT180, TEXT_UP, TEXT_DOWN, "imagenet/ILSVRC2012_val_00000010.jpeg"]
        local = engine.classify([image_bytes(n) for n in names], top_k=2)
        served = Client(server.url).classify([image_path(n) for n in names], top_k=2)
        for a, b in zip(local, served):
            assert a["class_ids"] == b["class_ids"]
            assert np.max(np.abs(np.array(a["scores"]) - np.array(b["scores"]))) <= 1e-5


def test_client_accepts_paths_bytes_numpy_and_pil(pulc_server):
    from PIL import Image
    rgb = cv2.imread(image_path(ROT180))[:, :, ::-1].copy()
    inputs = [image_path(ROT180), image_bytes(ROT180), rgb, Image.fromarray(rgb)]
    results = Client(pulc_server.url, images_per_request=3).classify(inputs)
    assert [r["label_names"][0] for r in results] == ["180"] * 4


def test_server_error_is_typed_and_server_keeps_serving(pulc_server):
    client = Client(pulc_server.url)
    with pytest.raises(ServerError) as err:
        client.classify([image_bytes(ROT0), b"definitely not an image"])
    assert err.value.status == "101"
    assert "images[1]: not a decodable image" in err.value.message
    assert client.classify(image_path(ROT0))[0]["label_names"] == ["0"]


def test_client_cli_classifies_a_folder(pulc_server):
    done = subprocess.run([sys.executable, "-m", "clas_system.client.cli", "classify", image_path("orientation"),
                           "--url", pulc_server.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["file"].rsplit("/", 1)[1], line["label_names"][0]) for line in lines] == [
        ("img_rot0_demo.jpg", "0"), ("img_rot180_demo.jpg", "180")]


def test_multiprocess_mode_serves(server_factory):
    """--use_multiprocess: gunicorn forks workers after the module is built; each loads its own
    predictor on first use (a warm-up before the fork would deadlock them)."""
    server = server_factory(modules={"clas_system": {"preset": "text_image_orientation", "cpu_threads": 1}},
                            use_multiprocess=True, workers=2)
    client = Client(server.url)
    for _ in range(3):
        assert [r["label_names"][0] for r in client.classify([image_path(ROT0), image_path(ROT180)])] == ["0", "180"]
    server.stop()


@pytest.mark.parametrize("init_args, message", [
    ({"batch_size": 0}, "clas_system.serving.batch_size: 0 is too small; the minimum is 1"),
    ({"preset": None, "model_dir": "/nonexistent/inference_model"},
     "clas_system.model_dir: model path not found: /nonexistent/inference_model"),
])
def test_bad_params_fail_start_up_naming_them(hub_home, tmp_path, init_args, message):
    code, log = run_to_exit(hub_home, tmp_path, {"clas_system": init_args})
    assert code != 0
    assert message in log


@pytest.mark.parametrize("script", ["classify.py", "reference_ndarray_protocol.py"])
def test_client_examples_run_against_a_live_server(default_server, script):
    url = default_server.url if script == "classify.py" else f"{default_server.url}/predict/clas_system"
    done = subprocess.run([sys.executable, f"client_examples/{script}", image_path(TEXT_UP), image_path(TEXT_DOWN),
                           "--url", url], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and ("180" in lines[1] or "[1]" in lines[1])
