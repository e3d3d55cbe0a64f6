"""A gallery that calibrates itself, served: rec_system with the default models and two gunicorn
workers, a gallery of the shared real photos (five photos of the anmuxi product, the drink
products, ImageNet photos, two photos each of the orientation and text-line demos), and a sixth
anmuxi photo as the query. The gallery sets its own threshold (target_false_accept 0.2), which is
not the shipped one; the query scores between the two, so the default decision follows the
gallery's threshold; stats, /ready and /metrics show it; a request's own score_thres still wins;
when the gallery shrinks below what can be calibrated the shipped threshold comes back. The same
calibration on a Milvus gallery as on faiss; `clas-gallery calibrate` with --unknown and --plot."""
import json
import time
import uuid

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clas_system import Client, gallery_cli
from clas_system.gallery import MilvusSettings, create_faiss_gallery, create_milvus_gallery
from clas_system.tasks.calibration import calibrate
from clas_system.tasks.crowding import WEIGHT
from harness.payloads import SHARED_IMAGES, image_path

SHIPPED = 0.435  # efficientnet_lite2's fixed score_thres: the fallback
TARGET = 0.2
QUERY = "product/gallery/anmuxi/003.jpg"


def gallery_entries():
    entries = [(f"product/gallery/anmuxi/{n:03d}.jpg", "anmuxi") for n in (1, 2, 4, 5, 6)]
    entries += [("orientation/img_rot0_demo.jpg", "orientation demo"), ("orientation/img_rot180_demo.jpg",
                                                                         "orientation demo")]
    entries += [(f"textline/textline_orientation_test_{n}_0.png", "text line") for n in (0, 1)]
    for folder in ("imagenet", "drink"):
        entries += [(f"{folder}/{p.name}", p.stem) for p in sorted((SHARED_IMAGES / folder).iterdir())]
    return entries


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    server = server_factory(modules={"rec_system": {"index_dir": str(tmp_path_factory.mktemp("g") / "gallery"),
                                                    "target_false_accept": TARGET}},
                            use_multiprocess=True, workers=2)
    entries = gallery_entries()
    Client(server.url).gallery("add", images=[image_path(p) for p, _ in entries], labels=[l for _, l in entries])
    return server


def calibration_of(server):
    return server.post("rec_system", {"gallery": "stats"})["results"]["stats"]["calibration"]


def settled(server, timeout_s=120.0):
    """The calibration once every worker answering has worked it out for the gallery as it is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answers = [calibration_of(server) for _ in range(4)]  # requests land on either worker
        if all(answer["up_to_date"] for answer in answers):
            assert all(answer == answers[0] for answer in answers)  # each worker works out the same
            return answers[0]
        time.sleep(0.5)
    raise AssertionError(f"no settled calibration: {answers}")


def best_score(server, score_thres=None):
    """(label, score) of the query's best recognised region, (None, None) when none is."""
    regions = Client(server.url).recognize(image_path(QUERY), score_thres=score_thres)[0]
    return max(((r["rec_docs"], r["rec_scores"]) for r in regions), key=lambda r: r[1], default=(None, None))


def metric(server, name, **labels):
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


def sampled_metric(server, name, expected, timeout_s=30.0, **labels):
    """The metric once every worker has sampled `expected` (each samples every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while metric(server, name, **labels) != pytest.approx(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    return metric(server, name, **labels)


def test_the_gallery_sets_its_own_threshold_and_the_decisions_follow_it(server):
    calibration = settled(server)
    assert calibration["calibrated"] and calibration["fallback"] == SHIPPED
    assert (calibration["items"], calibration["labels"]) == (17, 11)
    # every label held out: anmuxi 3 of its 5 photos, the others all theirs; anmuxi, orientation
    # and text line each photo left out once
    assert (calibration["impostor_samples"], calibration["genuine_samples"]) == (15, 9)
    assert calibration["estimated_false_accept"] <= TARGET
    threshold = calibration["score_thres"]
    assert abs(threshold - SHIPPED) > 0.02  # this gallery's own, not the shipped one

    label, score = best_score(server, score_thres=-1.0)
    assert label == "anmuxi" and threshold <= score < SHIPPED  # between the two
    assert best_score(server) == (label, pytest.approx(score))  # the default decision: recognised
    assert best_score(server, score_thres=SHIPPED) == (None, None)  # a request's own threshold wins

    assert requests.get(f"{server.url}/ready", timeout=30).json()["modules"]["rec_system"]["calibration"][
        "score_thres"] == threshold
    assert sampled_metric(server, "clas_recognition_threshold", threshold, module="rec_system") == \
        pytest.approx(threshold)
    assert sampled_metric(server, "clas_recognition_calibrated", 1, module="rec_system") == 1
    estimate = calibration["estimated_false_accept"]
    assert sampled_metric(server, "clas_recognition_estimated_rate", estimate, module="rec_system",
                          rate="false_accept") == pytest.approx(estimate)


def test_a_gallery_too_small_to_say_falls_back_to_the_shipped_threshold(server):
    Client(server.url).gallery("remove", labels=sorted({l for _, l in gallery_entries()} - {"anmuxi", "text line"}))
    calibration = settled(server)
    assert (calibration["calibrated"], calibration["score_thres"], calibration["labels"]) == (False, SHIPPED, 2)
    assert "2 labels" in calibration["reason"]
    label, score = best_score(server, score_thres=-1.0)  # its crowding changed with the gallery
    assert best_score(server) == ((label, pytest.approx(score)) if score >= SHIPPED else (None, None))


@pytest.mark.milvus
def test_milvus_and_faiss_galleries_calibrate_alike(milvus_uri, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 64))
    vectors = np.repeat(centres, 3, axis=0) + 0.7 * rng.normal(size=(36, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    labels = [f"product {i // 3}" for i in range(36)]
    with create_faiss_gallery(tmp_path / "g", 64, method="Flat") as faiss_gallery, \
            create_milvus_gallery(MilvusSettings(uri=milvus_uri, collection=f"t_{uuid.uuid4().hex[:12]}"), 64) as milvus:
        faiss_gallery.add(vectors, labels)
        milvus.add(vectors, labels)
        on_faiss, on_milvus = (calibrate(g, 0.05, WEIGHT, SHIPPED) for g in (faiss_gallery, milvus))
    assert on_faiss.calibrated and on_milvus.calibrated
    assert on_milvus.score_thres == pytest.approx(on_faiss.score_thres, abs=1e-4)
    assert on_milvus.as_dict()["estimated_known_right"] == on_faiss.as_dict()["estimated_known_right"]


def test_clas_gallery_calibrate_prints_the_threshold_with_unknown_photos_and_draws_the_curves(tmp_path, capsys):
    entries = gallery_entries()
    data_file = tmp_path / "list.txt"
    data_file.write_text("".join(f"{path}\t{label}\n" for path, label in entries))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    for name in ("misc/wangzai.jpg", "misc/coco_000000570688.jpg", "product/query/daoxiangcunjinzhubing_6.jpg"):
        (unknown / name.replace("/", "_")).symlink_to(image_path(name))
    light = ["--set", "preset=pplcnet_pulc_1280", "--set", "detector=null"]
    index_dir = str(tmp_path / "gallery")
    assert gallery_cli.main(["build", "--data-file", str(data_file), "--image-root", str(SHARED_IMAGES),
                             "--index-dir", index_dir, *light]) == 0
    capsys.readouterr()
    plot = tmp_path / "curve.png"
    assert gallery_cli.main(["calibrate", "--index-dir", index_dir, "--target-false-accept", "0.2", "--unknown",
                             str(unknown), "--plot", str(plot), *light]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["calibrated"] and printed["fallback"] == 0.5  # the plain model's fixed threshold
    assert (printed["impostor_samples"], printed["extra_impostors"], printed["genuine_samples"]) == (18, 3, 9)
    assert printed["estimated_false_accept"] <= 0.2 and printed["plot"] == str(plot)
    assert cv2.imread(str(plot)).shape == (440, 720, 3)
    assert gallery_cli.main(["calibrate", "--index-dir", index_dir, *light]) == 1  # the plain model: fixed
    assert "pass --target-false-accept" in capsys.readouterr().err
    assert gallery_cli.main(["calibrate", "--index-dir", str(tmp_path / "none"), "--target-false-accept", "0.2",
                             *light]) == 1
    assert "holds no gallery" in capsys.readouterr().err
    assert gallery_cli.main(["calibrate", "--index-dir", index_dir, "--target-false-accept", "0.2", "--plot",
                             str(plot), "--set", "verification=local_features", *light]) == 1
    assert "not a gallery that verifies local features" in capsys.readouterr().err
