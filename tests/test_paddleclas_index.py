"""PaddleClas's index format (vector.index + id_map.pkl): read safely, written so PaddleClas loads it,
and checked against PaddleClas 2.6.0 itself.

The reference is PaddleClas's own deploy/python/build_gallery.py and predict_system.py, run in
the reference venv (harness/paddleclas_reference.py) by harness/paddleclas_worker.py, with the
same feature model as ours: the derived DINOv2 model (its preset keeps PaddleClas's plain scores), handed to PaddleClas as
<folder>/inference.onnx with Global.use_onnx (its ONNX Runtime path). No detector on either side
(PaddleClas has none offline), so the whole image is the region, as predict_system does.
"""
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clas_system import gallery_cli
from clas_system.gallery import GalleryError, create_faiss_gallery, open_faiss_gallery
from clas_system.gallery.paddleclas_index import (import_into_gallery, read_id_map, read_paddleclas_index,
                                          write_paddleclas_index)
from clas_system.tasks.recognition import build_recognizer
from harness.paddleclas_reference import WORKER, reference_python
from harness.payloads import SHARED_IMAGES, image_bytes
from params.recognition import load_recognition_settings

LABELS = {  # the shared product gallery, plus drinks labelled with spaces and CJK
    **{f"product/gallery/anmuxi/00{i}.jpg": "anmuxi" for i in range(1, 7)},
    "drink/nongfu_spring.jpeg": "农夫山泉 spring water",
    "drink/youjia.jpeg": "优加",
    "drink/mosilian.jpeg": "mosilian yoghurt",
}
QUERIES = sorted(str(p.relative_to(SHARED_IMAGES)) for p in (SHARED_IMAGES / "product/query").iterdir())
NORMALIZE = {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": ""}}


# ---- id_map.pkl: only data comes back --------------------------------------------------------

class Payload:
    """What a hostile id_map.pkl carries: unpickling it would run a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("make_payload, refused", [
    (lambda marker: {0: Payload(f"touch {marker}")}, "refusing to load posix.system"),
    (lambda marker: {0: "a\tb", 1: [Payload(f"touch {marker}")]}, "refusing to load posix.system"),
    (lambda marker: {np.float64(1.5): "a\tb"}, "only integer scalars are allowed"),
    (lambda marker: {0: np.array([1, 2])}, "refusing to load numpy"),
])
def test_a_pickle_carrying_a_payload_is_refused_and_nothing_runs(tmp_path, make_payload, refused, capsys):
    marker = tmp_path / "payload-ran"
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "id_map.pkl").write_bytes(pickle.dumps(make_payload(marker)))
    with pytest.raises(GalleryError, match=refused):
        read_id_map(str(tmp_path / "index" / "id_map.pkl"))
    (tmp_path / "index" / "vector.index").write_bytes(b"")
    assert gallery_cli.main(["import", "--paddleclas-index", str(tmp_path / "index"),
                             "--index-dir", str(tmp_path / "gallery")]) == 1
    assert "id_map.pkl: not a PaddleClas id map: refusing" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "gallery").exists()


def test_id_maps_as_paddleclas_writes_them_are_read():
    lines = {np.int64(0): "gallery/001.jpg\tanmuxi", np.int64(7): "drink/1.jpg\t农夫山泉 spring water", 9: "x\ty"}
    for protocol in (2, 4, 5):
        path = Path(f"/tmp/id_map_{os.getpid()}_{protocol}.pkl")
        path.write_bytes(pickle.dumps(lines, protocol=protocol))
        try:
            assert read_id_map(str(path)) == {0: "gallery/001.jpg\tanmuxi", 7: "drink/1.jpg\t农夫山泉 spring water",
                                              9: "x\ty"}
        finally:
            path.unlink()


def test_not_a_dict_of_lines_is_refused(tmp_path):
    path = tmp_path / "id_map.pkl"
    for content, message in (([1, 2], "expected a dict"), ({"0": "a\tb"}, "expected integer ids"),
                             ({0: 3}, "expected integer ids and string lines")):
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(GalleryError, match=message):
            read_id_map(str(path))
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(GalleryError, match="not a readable pickle|not a PaddleClas id map"):
        read_id_map(str(path))


# ---- the format, both ways, for every method -------------------------------------------------

@pytest.mark.parametrize("method, metric", [("Flat", "IP"), ("HNSW32", "IP"), ("IVF", "L2"), ("Flat", "hamming"),
                                            ("HNSW32", "hamming")])
def test_export_then_import_keeps_vectors_labels_and_answers(tmp_path, method, metric):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"item {i % 5}" if i % 3 else f"农夫山泉 {i}" for i in range(64)]
    with create_faiss_gallery(tmp_path / "ours", 64, method=method, metric=metric, nlist=4) as gallery:
        gallery.add(vectors, labels)
        gallery.remove(ids=[3, 5])
        queries = vectors[[0, 1, 2, 4, 6, 7, 8, 9]]
        expected = gallery.search(queries, k=1)
        assert write_paddleclas_index(gallery, str(tmp_path / "exported")) == {
            "count": 62, "method": method, "metric": metric, "dim": 64}
        with pytest.raises(GalleryError, match="already holds a PaddleClas index"):
            write_paddleclas_index(gallery, str(tmp_path / "exported"))

    index = read_paddleclas_index(str(tmp_path / "exported"))
    kept = [i for i in range(64) if i not in (3, 5)]
    assert (index.method, index.metric, len(index.lines)) == (method, metric, 62)
    by_line = dict(zip(index.lines, index.vectors))
    for i in kept:
        stored = by_line[f"{i}\t{labels[i]}"]
        np.testing.assert_allclose(stored, (vectors[i] > 0) if metric == "hamming" else vectors[i], atol=1e-6)

    with create_faiss_gallery(tmp_path / "again", 64, method=method, metric=metric, nlist=4) as again:
        import_into_gallery(index, again)
        assert again.stats()["labels"] == {label: sum(labels[i] == label for i in kept) for label in
                                           {labels[i] for i in kept}}
        hits = again.search(queries, k=1)
    assert [[(h.label, round(h.score, 5)) for h in row] for row in hits] == \
        [[(h.label, round(h.score, 5)) for h in row] for row in expected]


# ---- against PaddleClas 2.6.0 -------------------------------------------------------------------

# PaddleClas's semantics (one view, plain cosine, score_thres 0.5) are those of the DINOv2 preset
DINOV2 = {"feature": {"preset": "dinov2_vits14"}, "detector": None}

def run_paddleclas(python, workdir, job):
    job_path, out_path = workdir / f"{job['kind']}_job.json", workdir / f"{job['kind']}_out.json"
    job_path.write_text(json.dumps(job, ensure_ascii=False))
    done = subprocess.run([python, str(WORKER), str(job_path), str(out_path)], capture_output=True, text=True,
                          cwd=workdir, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out_path.read_text())


def paddleclas_config(model_folder, index_dir, data_file):
    """inference_general.yaml as PaddleClas reads it, for our default feature model, no detector."""
    return {
        "Global": {"det_inference_model_dir": "", "rec_inference_model_dir": str(model_folder), "use_onnx": True,
                   "rec_nms_thresold": 0.05, "batch_size": 1, "use_gpu": False, "enable_mkldnn": False,
                   "cpu_num_threads": 2, "enable_benchmark": False, "use_fp16": False, "ir_optim": True,
                   "use_tensorrt": False, "gpu_mem": 8000, "enable_profile": False},
        "RecPreProcess": {"transform_ops": [{"ResizeImage": {"resize_short": 224}}, {"CropImage": {"size": 224}},
                                            NORMALIZE, {"ToCHWImage": None}]},
        "RecPostProcess": None,
        "IndexProcess": {"index_method": "HNSW32", "image_root": str(SHARED_IMAGES), "index_dir": str(index_dir),
                         "data_file": str(data_file), "index_operation": "new", "delimiter": "\t",
                         "dist_type": "IP", "embedding_size": 384, "batch_size": 32, "return_k": 5,
                         "score_thres": 0.5},
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """PaddleClas's build_gallery.py over the shared product gallery with our default features;
    `clas-gallery import` of it; `clas-gallery export` of that; then PaddleClas's predict_system.py
    over both its own index and our export, and ours over the import, on every product query."""
    workdir = tmp_path_factory.mktemp("paddleclas")
    settings = load_recognition_settings({**DINOV2, "gallery": {"index_dir": str(workdir / "unused")}})
    model_folder = workdir / "rec_model"
    model_folder.mkdir()
    os.symlink(settings.feature.model_path, model_folder / "inference.onnx")
    data_file = workdir / "gallery_list.txt"
    data_file.write_text("".join(f"{path}\t{label}\n" for path, label in LABELS.items()), encoding="utf-8")
    python = reference_python()
    theirs_dir, imported, exported = workdir / "paddleclas_index", workdir / "imported", workdir / "exported"
    config = paddleclas_config(model_folder, theirs_dir, data_file)
    run_paddleclas(python, workdir, {"kind": "shitu_build", "config": config})

    assert gallery_cli.main(["import", "--paddleclas-index", str(theirs_dir), "--index-dir", str(imported),
                             "--set", "preset=dinov2_vits14"]) == 0
    assert gallery_cli.main(["export", "--index-dir", str(imported), "--paddleclas-index", str(exported)]) == 0
    images = [str(SHARED_IMAGES / query) for query in QUERIES]
    answers = run_paddleclas(python, workdir, {"kind": "shitu_predict", "config": config, "images": images,
                                               "index_dirs": [str(theirs_dir), str(exported)]})
    return {"theirs": answers[str(theirs_dir)], "theirs_on_our_export": answers[str(exported)],
            "ours": our_answers(imported), "imported": imported}


def our_answers(index_dir):
    recognizer = build_recognizer(load_recognition_settings({**DINOV2, "gallery": {"index_dir": str(index_dir)}}))
    try:
        return recognizer.recognize([image_bytes(query) for query in QUERIES])
    finally:
        recognizer.gallery.close()


def assert_same_top1(ours, theirs):
    """Same boxes and scores; our labels whole, PaddleClas's cut to their first word (it shows
    id_map line.split()[1])."""
    assert len(ours) == len(theirs) == len(QUERIES)
    for query, our_regions, their_regions in zip(QUERIES, ours, theirs):
        assert [r["bbox"] for r in our_regions] == [r["bbox"] for r in their_regions], query
        for our, their in zip(our_regions, their_regions):
            assert our["rec_docs"].split()[0] == their["rec_docs"], query
            assert our["rec_scores"] == pytest.approx(their["rec_scores"], abs=1e-4), query


@pytest.mark.slow
def test_paddleclas_built_index_imports_and_answers_as_paddleclas(compared):
    assert all(compared["theirs"]), compared["theirs"]  # PaddleClas recognises every query (score_thres 0.5)
    with open_faiss_gallery(compared["imported"], read_only=True) as gallery:
        stats = gallery.stats()
    assert stats["labels"] == {"anmuxi": 6, "农夫山泉 spring water": 1, "优加": 1, "mosilian yoghurt": 1}
    assert (stats["method"], stats["metric"], stats["dim"]) == ("HNSW32", "IP", 384)
    assert_same_top1(compared["ours"], compared["theirs"])


@pytest.mark.slow
def test_our_export_loads_in_paddleclas_with_the_same_answers(compared):
    assert_same_top1(compared["ours"], compared["theirs_on_our_export"])
