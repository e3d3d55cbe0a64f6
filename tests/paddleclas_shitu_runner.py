"""Runs PaddleClas 2.6.0's own PP-ShiTu scripts inside the reference venv (.venv-paddleclas).

    <reference python> tests/paddleclas_shitu_runner.py JOB.json OUT.json

JOB.json: {"action": "build", "config": {...}} runs deploy/python/build_gallery.py's
GalleryBuilder; {"action": "predict", "config": {...}, "images": [paths], "index_dirs": [dirs]}
runs deploy/python/predict_system.py's SystemPredictor over each index folder in turn (as
IndexProcess.index_dir) on each image (read as its main() does) and writes
{index_dir: [[{"bbox", "rec_docs", "rec_scores"}, ...] per image]}. `config` is what PaddleClas's yaml
reader would return for an inference_general.yaml. Imports only the standard library here: the
test suite's venv starts it, the reference venv runs it.
"""
import importlib.util
import json
import sys
import types


def import_deploy():
    """paddleclas/__init__.py imports its training code; the deploy scripts need none of it."""
    spec = importlib.util.find_spec("paddleclas")
    if spec is None:
        raise SystemExit("paddleclas is not installed in this venv")
    package = types.ModuleType("paddleclas")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["paddleclas"] = package
    from paddleclas.deploy.python import build_gallery, predict_system
    from paddleclas.deploy.utils import config as config_module
    return build_gallery, predict_system, config_module


def as_paddleclas_config(plain, config_module):
    config = config_module.AttrDict(plain)
    config_module.create_attr_dict(config)
    return config


def plain(value):
    """numpy values in PaddleClas's output -> JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main(job_path, out_path):
    import cv2

    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    build_gallery, predict_system, config_module = import_deploy()
    config = as_paddleclas_config(job["config"], config_module)
    if job["action"] == "build":
        build_gallery.GalleryBuilder(config)
        result = {"built": config["IndexProcess"]["index_dir"]}
    else:
        result = {}
        for index_dir in job["index_dirs"]:
            config["IndexProcess"]["index_dir"] = index_dir
            system = predict_system.SystemPredictor(config)
            result[index_dir] = [[{"bbox": plain(r["bbox"]), "rec_docs": r["rec_docs"],
                                   "rec_scores": float(r["rec_scores"])}
                                  for r in system.predict(cv2.imread(path)[:, :, ::-1])] for path in job["images"]]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:3])
