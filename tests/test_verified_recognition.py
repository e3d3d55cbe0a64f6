"""Verification (rec_system verification: local_features) served in 2 gunicorn workers: a gallery
built from a data_file and grown by an add keeps every item's keypoints in its side store, the
calibration fits an inlier weight on the gallery's own pairs, recognitions verify their best hits
(whichever worker answers), and a removed item's keypoints go with it; clas-gallery build keeps
them too, and clas-gallery calibrate fits the inliers as the server does."""
import json
import time

from conftest import launch, wait_ready

from clas_system import Client, gallery_cli
from clas_system.gallery import open_faiss_gallery
from clas_system.tasks.verifier import KIND
from harness.payloads import SHARED_IMAGES

OPENSET = SHARED_IMAGES.parent / "openset"
OBJECTS = ["ukb-activity-toy", "ukb-america-tin", "ukb-brio-box", "ukb-duck-toy", "ukb-fish-tile", "ukb-muna-book"]


def gallery_photos(label):
    return sorted((OPENSET / "gallery" / label).glob("*.jpg"))


def calibrated_state(client, timeout=180):
    """The stats' calibration once it carries a fitted inlier weight (each worker fits its own)."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.gallery("stats")["stats"]["calibration"]
        if state.get("calibrated") and state.get("inlier_weight", 0) > 0:
            return state
        assert time.monotonic() < deadline, f"no inlier weight fitted in {timeout} s: {state}"
        time.sleep(1)


def test_items_keep_keypoints_and_recognitions_verify_them_in_two_workers(hub_home, tmp_path):
    listed = [(photo, label) for label in OBJECTS[:-1] for photo in gallery_photos(label)]
    data_file = tmp_path / "objects.txt"
    data_file.write_text("".join(f"{photo.relative_to(OPENSET)}\t{label}\n" for photo, label in listed))
    modules = {"rec_system": {"index_dir": str(tmp_path / "gallery"), "data_file": str(data_file),
                              "image_root": str(OPENSET), "index_method": "Flat", "cpu_threads": 1,
                              "verification": "local_features", "target_false_accept": 0.2}}
    server = wait_ready(launch(hub_home, tmp_path / "servers", modules, use_multiprocess=True, workers=2), 300)
    try:
        client = Client(server.url)
        added = client.gallery("add", images=[str(p) for p in gallery_photos(OBJECTS[-1])],
                               labels=[OBJECTS[-1]] * 2)["ids"]
        side = open_faiss_gallery(tmp_path / "gallery", read_only=True).side
        assert side.count(KIND) == len(listed) + 2  # the data_file's items and the added ones
        state = calibrated_state(client)
        assert state["inlier_floor"] >= 6 and state["score_thres"] > 0
        for label in (OBJECTS[2], OBJECTS[-1]):
            for query in sorted((OPENSET / "query_known" / label).glob("*.jpg")):
                for _ in range(2):  # each worker in turn, most likely
                    regions = client.recognize(str(query), score_thres=-1.0)[0]
                    assert max(regions, key=lambda r: r["rec_scores"])["rec_docs"] == label
        assert client.gallery("stats")["stats"]["calibration"]["regions_verified"] > 0
        assert client.gallery("remove", ids=[added[0]])["removed"] == 1
        assert side.get(KIND, added) == [None, side.get(KIND, [added[1]])[0]] and side.count(KIND) == len(listed) + 1
    finally:
        server.stop()


def test_clas_gallery_builds_with_keypoints_and_calibrates_as_the_server(tmp_path, capsys):
    photos = [(photo, label) for label in OBJECTS[:5] for photo in gallery_photos(label)]
    data_file = tmp_path / "objects.txt"
    data_file.write_text("".join(f"{photo.relative_to(OPENSET)}\t{label}\n" for photo, label in photos))
    settings = ["--index-dir", str(tmp_path / "gallery"), "--set", "verification=local_features"]
    assert gallery_cli.main(["build", "--data-file", str(data_file), "--image-root", str(OPENSET),
                             "--set", "index_method=Flat", *settings]) == 0
    assert open_faiss_gallery(tmp_path / "gallery", read_only=True).side.count(KIND) == len(photos)
    capsys.readouterr()
    assert gallery_cli.main(["calibrate", "--target-false-accept", "0.2", *settings]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["calibrated"] and printed["inlier_floor"] >= 6 and printed["inlier_weight"] > 0
