"""The bench's machinery, fast: wrk + its Lua script against a real server (answers checked,
server CPU counted), the PaddleClas 2.6.0 reference venv on real images, and the soak's RSS
trend report."""
import numpy as np
import pytest

from clas_system.ops.decode import decode_image
from clas_system.tasks.classify import build_classifier
from harness.hub_server import start_hub_server
from harness.paddleclas_reference import PaddleClasReferenceError, reference_scores, time_predict_cls
from harness.payloads import file_body, image_bytes, image_path
from harness.process_stats import rss_summary
from bench.served import BOUNDARY, multipart_body
from harness.wrk import find_wrk, run_wrk, served_row, write_bodies
from params import load_classifier_settings

ORIENTATION = ["orientation/img_rot0_demo.jpg", "orientation/img_rot180_demo.jpg"]
TEXT_LINES = ["textline/textline_orientation_test_0_0.png", "textline/textline_orientation_test_1_0.png"]


@pytest.fixture(scope="module")
def wrk():
    found = find_wrk()
    if not found:
        pytest.skip("wrk is not installed (make system-packages): the bench's load generator")
    return found


@pytest.fixture(scope="module")
def bench_server(hub_home, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench_server")
    server = start_hub_server(hub_home, workdir, modules={"clas_system": {"preset": "text_line_orientation"}})
    yield server
    server.stop()


def test_wrk_measures_a_real_server_and_its_cpu(wrk, bench_server, tmp_path):
    bodies = [file_body(image_bytes(name)) for name in TEXT_LINES]
    body_list = write_bodies(tmp_path, "file", bodies)
    row = served_row(wrk, bench_server, "clas_system", bodies, body_list, seconds=1.0, warmup_seconds=1.0)
    assert row["requests"] > 10
    assert row["bad_answers"] == 0 and row["socket_errors"] == 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["img_per_s"] > 10
    assert 0.1 < row["server_cpu_ms_per_image"] < 1000  # counted from the server's process group


def test_wrk_drives_binary_bodies_and_counts_images_per_request(wrk, bench_server, tmp_path):
    images = [image_bytes(name) for name in TEXT_LINES]
    one = served_row(wrk, bench_server, "clas_system", images, write_bodies(tmp_path, "image", images),
                     seconds=1.0, warmup_seconds=1.0, content_type="image/png")
    assert one["requests"] > 10 and one["bad_answers"] == 0 and one["socket_errors"] == 0
    body = multipart_body(images)
    two = served_row(wrk, bench_server, "clas_system", [body], write_bodies(tmp_path, "multipart", [body]),
                     seconds=1.0, warmup_seconds=1.0, content_type=f"multipart/form-data; boundary={BOUNDARY}",
                     images_per_request=2)
    assert two["requests"] > 5 and two["bad_answers"] == 0
    assert two["img_per_s"] == pytest.approx(2 * two["requests"] / two["seconds"])


def test_wrk_counts_refused_requests_as_bad(wrk, bench_server, tmp_path):
    body_list = write_bodies(tmp_path, "empty", [b'{"images": []}'])
    out = run_wrk(wrk, bench_server.predict_url("clas_system"), body_list, 1)
    assert out["requests"] > 0
    assert out["bad_answers"] == out["requests"]


@pytest.mark.slow
def test_paddleclas_reference_matches_our_engine_on_pulc():
    reference = reference_scores([image_path(n) for n in ORIENTATION], preset="text_image_orientation")
    assert [r["label_names"][0] for r in reference] == ["0", "180"]
    expected = np.array([r["probabilities"] for r in reference])
    assert np.allclose(expected.sum(axis=1), 1.0, atol=1e-5)
    engine = build_classifier(load_classifier_settings({"preset": "text_image_orientation"},
                                                       {"reduced_decode": False, "backend": "onnxruntime"}))
    ours = np.stack(engine.predict_tensors([engine.image_to_tensor(image_bytes(n)) for n in ORIENTATION]))
    assert np.max(np.abs(ours - expected)) <= 1e-4


@pytest.mark.slow
def test_paddleclas_reference_runs_the_text_line_model_on_given_tensors():
    engine = build_classifier(load_classifier_settings({"preset": "text_line_orientation"}))
    tensors = np.stack([engine.preprocess(decode_image(image_bytes(n), to_rgb=engine.to_rgb))
                        for n in TEXT_LINES])
    reference = reference_scores(tensors=tensors, preset="text_line_orientation")
    assert [r["label_names"][0] for r in reference] == ["0", "180"]  # PaddleClas's test images: _<class>_
    with pytest.raises(PaddleClasReferenceError, match="cannot express this model's preprocessing"):
        reference_scores([image_path(n) for n in TEXT_LINES], preset="text_line_orientation")


@pytest.mark.slow
def test_paddleclas_predict_cls_is_timed_on_every_image():
    out = time_predict_cls([image_path(n) for n in ORIENTATION], preset="text_image_orientation",
                           total_images=16, batch_size=8)
    assert out["images"] == 16
    assert out["img_per_s"] > 1


def test_soak_reports_rss_at_minute_marks_and_growth():
    # generated samples: a real 31-minute soak does not fit in a test. 1000 MB, +1 MB a minute.
    samples = [(float(t), 1000 * 1024 + t / 60 * 1024) for t in range(0, 31 * 60 + 1)]
    rss = rss_summary(samples, 31 * 60)
    assert rss["rss_at_minute_mb"] == {"1": 1001.0, "2": 1002.0, "5": 1005.0, "10": 1010.0, "20": 1020.0,
                                       "30": 1030.0}
    assert rss["growth_between_marks_pct"] == {"minute 1 -> end": 3.0, "minute 10 -> end": 2.08,
                                               "minute 10 -> 30": 1.98}
    assert rss["growth_per_10min_pct"] == {"minute 10 -> 20": 0.99, "minute 20 -> 30": 0.98}
    assert rss["fitted_growth_pct_per_10min"] == pytest.approx(1.0, abs=0.01)


@pytest.mark.e2e
def test_openset_bench_serves_a_small_set_and_reports_the_decisions(tmp_path):
    """A generated folder of the open-set shape from the shared images (the real open-set photos
    are for the bench itself): the shared products as known labels, other photos as unknowns."""
    import json
    import shutil

    from bench import openset_bench

    data = tmp_path / "set"
    anmuxi = [f"product/gallery/anmuxi/{n:03d}.jpg" for n in range(1, 7)]
    for label, gallery, queries in (("anmuxi", anmuxi, ["product/query/anmuxi.jpg"]),
                                    ("youjia", ["drink/youjia.jpeg"], ["drink/youjia.jpeg"]),
                                    ("mosilian", ["drink/mosilian.jpeg"], []),
                                    ("nongfu_spring", ["drink/nongfu_spring.jpeg"], [])):
        for folder, names in (("gallery", gallery), ("query_known", queries)):
            (data / folder / label).mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy(image_path(name), data / folder / label / name.replace("/", "_"))
    (data / "query_unknown").mkdir()
    for name in ("imagenet/ILSVRC2012_val_00006666.JPEG", "misc/coco_000000570688.jpg"):
        shutil.copy(image_path(name), data / "query_unknown" / name.replace("/", "_"))
    openset_bench.main(["--data", str(data), "--pipelines", "default", "--out", str(tmp_path / "out")])
    row = json.loads((tmp_path / "out" / "openset.json").read_text())["results"][0]
    assert (row["known"], row["unknown"]) == (2, 2) and row["known_right"] == 1.0 and row["unknown_rejected"] == 1.0
    assert set(row["parts"]) == {"product classes"} and (tmp_path / "out" / "openset_curve.png").stat().st_size > 0


def test_verification_cost_times_the_three_parts_on_real_photos(capsys):
    from bench import verification_cost
    verification_cost.main(["--queries", "2", "--rounds", "1"])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0] == "ms" and all(float(cell) > 0 for cell in cells[1:4]) and cells[4].endswith("×")
