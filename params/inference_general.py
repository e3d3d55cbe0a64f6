"""PaddleClas's inference_general.yaml, read as it is into rec_system's settings:

    read_inference_general("deploy/configs/inference_general.yaml")  # -> a RecognitionParams-shaped dict

Every key it holds is either mapped onto rec_system's settings or named in an error; the few that
only drive PaddleClas's offline runner (infer_imgs, enable_benchmark, ...) are logged as ignored.
"""
import logging
import os

from .common import PREDICTOR_GLOBAL_KEYS, read_yaml_mapping
from .schema import ParamsError

log = logging.getLogger("clas_system")

# Global keys -> (section, key) here; section None is top level.
GENERAL_GLOBAL_KEYS = {
    "rec_nms_thresold": (None, "rec_nms_thresh"),  # sic: PaddleClas's spelling
    "threshold": ("detector", "threshold"),
    "max_det_results": ("detector", "max_det_results"),
    "label_list": ("detector", "label_list"),
    **PREDICTOR_GLOBAL_KEYS,
}
# Read by PaddleClas's offline scripts only (image list, benchmark log, result pictures).
GENERAL_OFFLINE_KEYS = ("infer_imgs", "image_shape", "enable_benchmark", "enable_profile", "output_dir")
GENERAL_INDEX_KEYS = {
    "index_method": ("gallery", "index_method"),
    "image_root": ("gallery", "image_root"),
    "index_dir": ("gallery", "index_dir"),
    "data_file": ("gallery", "data_file"),
    "delimiter": ("gallery", "delimiter"),
    "dist_type": ("gallery", "dist_type"),
    "batch_size": ("serving", "batch_size"),
    "return_k": (None, "return_k"),
    "score_thres": (None, "score_thres"),
    "hamming_radius": (None, "hamming_radius"),
    "embedding_size": (None, "embedding_size"),
}
GENERAL_SECTIONS = ("Global", "DetPreProcess", "DetPostProcess", "RecPreProcess", "RecPostProcess", "IndexProcess")


def unsupported(where, key, known):
    return ParamsError(f"{where}.{key}: not supported by rec_system; supported keys: {', '.join(known)}")


def yaml_path(value):
    """A path from the yaml. Relative ones are relative to the working directory, as in PaddleClas
    (whose scripts run from deploy/, where "./models/..." is)."""
    if not isinstance(value, str) or not value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def put(out, section, key, value):
    if section is None:
        out[key] = value
    else:
        out.setdefault(section, {})[key] = value


def general_global(section, out, where):
    """Global: the two model folders (use_onnx: their inference.onnx), detector and predictor keys.
    Returns the keys ignored as offline-only."""
    use_onnx = bool(section.get("use_onnx", False))
    model_file = (lambda folder: os.path.join(folder, "inference.onnx")) if use_onnx else (lambda folder: folder)
    detector, ignored = {}, []
    for key, value in section.items():
        if key == "det_inference_model_dir":
            detector["model_dir"] = model_file(yaml_path(value)) if value else None
        elif key == "rec_inference_model_dir":
            if value:  # else params.py's feature model stays
                put(out, "feature", "preset", None)
                put(out, "feature", "model_dir", model_file(yaml_path(value)))
        elif key == "batch_size":
            if value != 1:
                raise ParamsError(f"{where}.batch_size: {value!r}; PaddleClas's predict_system requires 1 (images "
                                  f"are detected one at a time); rec_system batches by serving.batch_size")
        elif key in GENERAL_GLOBAL_KEYS:
            section_name, name = GENERAL_GLOBAL_KEYS[key]
            if section_name == "detector":
                detector[name] = value
            else:
                put(out, section_name, name, value)
        elif key in GENERAL_OFFLINE_KEYS:
            ignored.append(key)
        elif key != "use_onnx":
            raise unsupported(where, key, ["det_inference_model_dir", "rec_inference_model_dir", "batch_size",
                                           "use_onnx", *GENERAL_GLOBAL_KEYS, *GENERAL_OFFLINE_KEYS])
    # PaddleClas disables detection when det_inference_model_dir is empty; so does rec_system.
    out["detector"] = detector if detector.get("model_dir") else None
    return ignored


def general_index(section, out, where):
    for key, value in section.items():
        if key == "index_operation":
            if value != "new":
                raise ParamsError(f"{where}.index_operation: {value!r} is not supported at start-up; a gallery is "
                                  f"built from data_file when index_dir holds none ('new'); append and remove with "
                                  f"rec_system's gallery requests or clas-gallery")
        elif key in GENERAL_INDEX_KEYS:
            path_like = key in ("image_root", "index_dir", "data_file")
            put(out, *GENERAL_INDEX_KEYS[key], yaml_path(value) if path_like else value)
        else:
            raise unsupported(where, key, ["index_operation", *GENERAL_INDEX_KEYS])


def transform_ops(section, where):
    if not isinstance(section, dict) or set(section) != {"transform_ops"}:
        raise ParamsError(f"{where}: expected a mapping with transform_ops only, got {section!r}")
    return section["transform_ops"]


def general_rec_postprocess(section, out, where):
    """RecPostProcess: null, or Binarize with method sign (PaddleClas's hamming features)."""
    if section is None:
        return
    method = (section.get("Binarize") or {}).get("method") if isinstance(section, dict) else None
    if section != {"Binarize": {"method": "sign"}}:
        raise ParamsError(f"{where}: {section!r} is not supported; rec_system supports null or "
                          f"{{Binarize: {{method: sign}}}}" + (f" (not method {method!r})" if method else ""))
    put(out, "feature", "binarize", True)


def read_inference_general(path):
    """PaddleClas's inference_general.yaml -> a RecognitionParams-shaped dict."""
    config = read_yaml_mapping(path, "inference_config", "Global/IndexProcess/...")
    for name in config:
        if name not in GENERAL_SECTIONS:
            raise ParamsError(f"{path}: section {name!r} is not supported; supported: {', '.join(GENERAL_SECTIONS)}")
    out = {}
    ignored = general_global(config.get("Global") or {}, out, f"{path}: Global")
    if out.get("detector") is not None and config.get("DetPreProcess") is not None:
        out["detector"]["preprocess"] = transform_ops(config["DetPreProcess"], f"{path}: DetPreProcess")
    if config.get("DetPostProcess"):
        raise ParamsError(f"{path}: DetPostProcess: {config['DetPostProcess']!r} is not supported (PaddleClas "
                          f"ignores it too); leave it empty")
    if config.get("RecPreProcess") is not None:
        put(out, "feature", "preprocess", transform_ops(config["RecPreProcess"], f"{path}: RecPreProcess"))
    general_rec_postprocess(config.get("RecPostProcess"), out, f"{path}: RecPostProcess")
    general_index(config.get("IndexProcess") or {}, out, f"{path}: IndexProcess")
    if ignored:
        log.info("%s: ignoring Global %s (used by PaddleClas's offline scripts only)", path, ", ".join(ignored))
    return out
