"""Runs inside the reference venv (.venv-paddleclas), never in ours: PaddleClas 2.6.0's own
deploy code on a job described by a JSON file. Started by harness/paddleclas_reference.py as
`<venv python> paddleclas_worker.py JOB.json OUT.json`; imports only the standard library here
and the `paddleclas` wheel's deploy/ modules inside the functions.

Job kinds:
- "scores": {"config": <PaddleClas inference config dict>, "images": [paths] | null,
             "tensors_npy": path | null} -> {"results": [{"class_ids", "scores", "label_names",
             "probabilities"}]}. Images go through the config's PreProcess.transform_ops, read the
             way predict_cls.py reads them (cv2.imread, BGR->RGB) unless the ops start with
             DecodeImage (then the file bytes, as the hub module gets them). Tensors (N,C,H,W
             float32) skip preprocessing. "probabilities" is the model's raw output row.
- "predict_cls": {"config": ..., "image_dir": folder, "expected_images": n} -> {"seconds",
             "load_seconds", "images"}: deploy/python/predict_cls.py's own main() over the folder,
             timed; load_seconds is its predictor construction, counted apart.
- "shitu_build": {"config": <inference_general.yaml as a dict>} -> {"built": index_dir}:
             deploy/python/build_gallery.py's GalleryBuilder.
- "shitu_predict": {"config": ..., "images": [paths], "index_dirs": [dirs]} -> {index_dir:
             [[{"bbox", "rec_docs", "rec_scores"}, ...] per image]}: deploy/python/predict_system.py's
             SystemPredictor over each index folder in turn (as IndexProcess.index_dir), each image
             read as its main() does.
"""
import contextlib
import importlib.util
import io
import json
import sys
import time
import types
from pathlib import Path


def import_deploy_without_package_init():
    """paddleclas/__init__.py imports the training code (ppcls, faiss, sklearn, requests...);
    the deploy scripts need none of it, so register the package folder without running it.
    -> PaddleClas's config module (deploy/utils/config.py)."""
    spec = importlib.util.find_spec("paddleclas")
    if spec is None:
        raise SystemExit("paddleclas is not installed in this venv")
    package = types.ModuleType("paddleclas")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["paddleclas"] = package
    from paddleclas.deploy.utils import config as config_module
    return config_module


def as_paddleclas_config(plain, config_module):
    """The dict as PaddleClas's own yaml reader (utils/config.parse_config) would hand it over."""
    config = config_module.AttrDict(plain)
    config_module.create_attr_dict(config)
    return config


def read_images(paths, transform_ops):
    import cv2
    if transform_ops and next(iter(transform_ops[0])) == "DecodeImage":
        return [Path(path).read_bytes() for path in paths]
    images = []
    for path in paths:
        image = cv2.imread(path)
        if image is None:
            raise SystemExit(f"{path}: OpenCV cannot read this image")
        images.append(image[:, :, ::-1])
    return images


def run_scores(job, config_module):
    import numpy as np
    from paddleclas.deploy.python import predict_cls

    config = as_paddleclas_config(job["config"], config_module)
    predictor = predict_cls.ClsPredictor(config)
    postprocess, predictor.postprocess = predictor.postprocess, None
    if job.get("tensors_npy"):
        batch = list(np.load(job["tensors_npy"]))
        predictor.preprocess_ops = []
    else:
        batch = read_images(job["images"], config.get("PreProcess", {}).get("transform_ops", []))
    size = int(config["Global"].get("batch_size", 1))
    results = []
    for start in range(0, len(batch), size):
        raw = predictor.predict(batch[start:start + size])
        topk = postprocess(raw) if postprocess is not None else [{} for _ in raw]
        for row, top in zip(np.asarray(raw), topk):
            results.append({**top, "probabilities": row.astype("float64").tolist()})
    return {"results": results}


def run_predict_cls(job, config_module):
    from paddleclas.deploy.python import predict_cls

    config = as_paddleclas_config(job["config"], config_module)
    config["Global"]["infer_imgs"] = job["image_dir"]
    load = {}
    original = predict_cls.ClsPredictor

    class TimedLoad(original):
        def __init__(self, cfg):
            started = time.perf_counter()
            super().__init__(cfg)
            load["seconds"] = time.perf_counter() - started

    predict_cls.ClsPredictor = TimedLoad
    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        predict_cls.main(config)
    seconds = time.perf_counter() - started
    lines = [line for line in printed.getvalue().splitlines() if "class id(s)" in line or "score(s)" in line]
    if len(lines) != job["expected_images"]:
        raise SystemExit(f"predict_cls printed {len(lines)} results for {job['expected_images']} images")
    return {"seconds": seconds, "load_seconds": load["seconds"], "images": len(lines)}


def plain(value):
    """numpy values in PaddleClas's output -> JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def run_shitu_build(job, config_module):
    from paddleclas.deploy.python import build_gallery

    config = as_paddleclas_config(job["config"], config_module)
    build_gallery.GalleryBuilder(config)
    return {"built": config["IndexProcess"]["index_dir"]}


def run_shitu_predict(job, config_module):
    import cv2
    from paddleclas.deploy.python import predict_system

    config = as_paddleclas_config(job["config"], config_module)
    result = {}
    for index_dir in job["index_dirs"]:
        config["IndexProcess"]["index_dir"] = index_dir
        system = predict_system.SystemPredictor(config)
        result[index_dir] = [[{"bbox": plain(r["bbox"]), "rec_docs": r["rec_docs"],
                               "rec_scores": float(r["rec_scores"])}
                              for r in system.predict(cv2.imread(path)[:, :, ::-1])] for path in job["images"]]
    return result


JOB_KINDS = {"scores": run_scores, "predict_cls": run_predict_cls, "shitu_build": run_shitu_build,
             "shitu_predict": run_shitu_predict}


def main():
    job_path, out_path = sys.argv[1:3]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    config_module = import_deploy_without_package_init()
    if job.get("kind") not in JOB_KINDS:
        raise SystemExit(f"job kind {job.get('kind')!r}: expected one of {sorted(JOB_KINDS)}")
    out = JOB_KINDS[job["kind"]](job, config_module)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
