"""`clas-gallery`: build a rec_system gallery offline, show what one holds, or move one to and from
PaddleClas's index format (vector.index + id_map.pkl, see gallery.paddleclas_index).

    clas-gallery build --data-file gallery_list.txt --image-root images/ --index-dir /srv/gallery
    clas-gallery stats --index-dir /srv/gallery
    clas-gallery calibrate --index-dir /srv/gallery [--unknown DIR] [--plot curve.png]
    clas-gallery import --paddleclas-index drink_dataset_v2.0/index --index-dir /srv/gallery
    clas-gallery export --index-dir /srv/gallery --paddleclas-index exported/
    clas-gallery list | relabel | thumbnail | reembed ...   (curation_cli)

Features are made exactly as rec_system makes them: the same settings schema, read from a
rec_system params.py (--params) and adjusted with --set KEY=VALUE (flat keys as in config.json's
init_args, values as JSON), so the built gallery opens under `hub serving start -m rec_system`.
`calibrate` prints the threshold a gallery sets itself (tasks.calibration) with its estimated
rates; --unknown DIR adds photos that must be rejected (each recognised against the gallery as a
query would be: one more impostor sample each), --plot draws the genuine and impostor curves.
"""
import argparse
import codecs
import json
import runpy
import sys
from pathlib import Path

import numpy as np

from params.gallery import INDEX_METHODS, MilvusSettings
from params.recognition import load_recognition_settings
from params.schema import ParamsError

from .curation_cli import add_curation_commands
from .errors import ClasSystemError, GalleryError
from .gallery import (create_faiss_gallery, gallery_exists, holds_faiss_gallery, open_faiss_gallery,
                      staged_folder)
from .gallery.migrate import migrate_between
from .gallery.paddleclas_index import import_into_gallery, read_paddleclas_index, write_paddleclas_index
from .gallery.startup import build_gallery
from .tasks.calibration import COLUMNS, best_rows, decide, gallery_pairs
from .tasks.calibration_plot import draw_calibration
from .tasks.crowding import WEIGHT
from .tasks.features import build_feature_extractor
from .tasks.recognition import build_recognizer, keep_keypoints
from .tasks.verifier import calibrate_with_inliers


def parse_assignment(text):
    """KEY=VALUE with VALUE as JSON when it parses (false, 4, "x", [224, 224]), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def escaped_text(text):
    """A delimiter as typed in a shell: '\\t' means a tab."""
    return codecs.decode(text, "unicode_escape")


def read_params_file(path):
    """The PARAMS dict of a rec_system params.py."""
    params = runpy.run_path(path).get("PARAMS")
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: defines no PARAMS dict")
    return params


def settings_from_args(args):
    overrides = dict(args.set)
    flags = {"index_dir": args.index_dir, "data_file": getattr(args, "data_file", None),
             "image_root": getattr(args, "image_root", None), "delimiter": getattr(args, "delimiter", None),
             "target_false_accept": getattr(args, "target_false_accept", None)}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    module_params = read_params_file(args.params) if args.params else {}
    return load_recognition_settings(module_params, overrides, where="clas-gallery")


def build(args):
    settings = settings_from_args(args)
    if settings.gallery.data_file is None:
        raise ParamsError("clas-gallery: --data-file is required to build a gallery")
    if gallery_exists(settings.gallery):
        where = (settings.gallery.index_dir if settings.gallery.index_backend == "faiss"
                 else f"milvus collection {settings.gallery.milvus.collection}")
        raise GalleryError(f"{where} already holds a gallery; remove it first or choose another --index-dir")
    extractor = build_feature_extractor(settings.feature)
    with build_gallery(settings.gallery, extractor, keep_keypoints if settings.verification else None) as gallery:
        return gallery.stats()


def check_index_fits(index, source, extractor):
    """A PaddleClas index is searched with these features only if it was built like them."""
    settings = extractor.settings
    if (index.metric == "hamming") != settings.binarize:
        raise GalleryError(f"{source}: the index is {'binary (hamming)' if index.metric == 'hamming' else index.metric}"
                           f" but binarize is {settings.binarize}; set --set binarize="
                           f"{'true --set dist_type=hamming' if index.metric == 'hamming' else 'false'}")
    if index.vectors.shape[1] != extractor.dim:
        raise GalleryError(f"{source}: the index holds {index.vectors.shape[1]}-value vectors but the feature model "
                           f"{settings.model_path} makes {extractor.dim}; import with the settings (--params / "
                           f"--set) of the model that built the index")


def import_index(args):
    """A PaddleClas index folder -> a new gallery, fingerprinted with the features of the given
    settings: the index must have been built by that same model and preprocessing."""
    settings = settings_from_args(args)
    index_dir = Path(settings.gallery.index_dir)
    if holds_faiss_gallery(index_dir) or (index_dir.exists() and any(index_dir.iterdir())):
        raise GalleryError(f"{index_dir} is not empty; choose a new --index-dir")
    index = read_paddleclas_index(args.paddleclas_index)
    extractor = build_feature_extractor(settings.feature)
    check_index_fits(index, args.paddleclas_index, extractor)
    with staged_folder(index_dir) as staging:
        with create_faiss_gallery(staging, extractor.dim, method=index.method, metric=index.metric,
                                  fingerprint=extractor.fingerprint,
                                  nlist=index.nlist or settings.gallery.nlist) as gallery:
            import_into_gallery(index, gallery, args.delimiter or "\t")
            gallery.save()
    with open_faiss_gallery(index_dir, read_only=True) as gallery:
        return gallery.stats()


def export_index(args):
    with open_faiss_gallery(args.index_dir, read_only=True) as gallery:
        return write_paddleclas_index(gallery, args.paddleclas_index, args.delimiter or "\t")


def stats(args):
    with open_faiss_gallery(args.index_dir, read_only=True) as gallery:
        return gallery.stats()


def migrate(args):
    """A gallery between faiss (an index dir) and Milvus, checked by counts and top-1 answers."""
    milvus = MilvusSettings(uri=args.milvus_uri, collection=args.collection, token=args.token,
                            index_type=args.milvus_index_type)
    return migrate_between(args.index_dir, milvus, args.to, index_method=args.index_method)


UNKNOWN_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UNKNOWN_BATCH = 8


def unknown_photos(folder):
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in UNKNOWN_SUFFIXES)
    if not paths:
        raise ParamsError(f"clas-gallery calibrate: --unknown {folder} holds no photos "
                          f"({', '.join(UNKNOWN_SUFFIXES)})")
    return paths


def unknown_rows(recognizer, paths, weight):
    """Rows of photos that must be rejected, scored against the gallery as a query would be."""
    rows = [np.empty((0, len(COLUMNS)))]
    for start in range(0, len(paths), UNKNOWN_BATCH):
        arrays = recognizer.decode_all([p.read_bytes() for p in paths[start:start + UNKNOWN_BATCH]])
        rows.append(best_rows(recognizer.gallery, recognizer.crowding, weight, recognizer.region_vectors(arrays)))
    return np.vstack(rows)


def calibrate(args):
    """The gallery's own threshold as rec_system works it out, with photos that must be rejected
    (--unknown) as extra impostor samples; --plot draws the genuine and impostor curves."""
    settings = settings_from_args(args)
    target = settings.target_false_accept
    if target is None:
        raise ParamsError("clas-gallery calibrate: these settings keep a fixed score_thres (set, or a model or metric "
                          "that does not calibrate); pass --target-false-accept to calibrate anyway")
    if not gallery_exists(settings.gallery):
        where = (settings.gallery.index_dir if settings.gallery.index_backend == "faiss"
                 else f"milvus collection {settings.gallery.milvus.collection}")
        raise GalleryError(f"{where} holds no gallery")
    recognizer = build_recognizer(settings)
    weight = WEIGHT if recognizer.crowding is not None else 0.0
    if recognizer.verifier is not None and (args.unknown or args.plot):
        recognizer.gallery.close()
        raise ParamsError("clas-gallery calibrate: --unknown and --plot cover the similarity score alone, not a "
                          "gallery that verifies local features (verification: local_features)")
    try:
        if recognizer.verifier is not None:  # the threshold rec_system serves: scores and inliers fitted together
            calibration, inliers = calibrate_with_inliers(recognizer.gallery, recognizer.verifier, target, weight,
                                                          settings.score_thres)
            return {**calibration.as_dict(), "inlier_floor": inliers.floor, "inlier_weight": inliers.weight,
                    "plot": None}
        extra = unknown_rows(recognizer, unknown_photos(args.unknown), weight) if args.unknown else \
            np.empty((0, len(COLUMNS)))
        pairs = gallery_pairs(recognizer.gallery, weight)
        calibration = decide(pairs, target, settings.score_thres, extra)
        if args.plot:
            draw_calibration(pairs.genuine[:, 0], np.concatenate([pairs.impostor[:, 0], extra[:, 0]]),
                             calibration.score_thres, settings.score_thres, args.plot)
    finally:
        recognizer.gallery.close()
    return {**calibration.as_dict(), "plot": args.plot}


def add_calibration_command(commands):
    parser = commands.add_parser("calibrate", help="the threshold the gallery sets itself, its estimated rates, "
                                                   "and the score curves")
    parser.add_argument("--index-dir", required=True)
    parser.add_argument("--target-false-accept", type=float, default=None,
                        help="share of unknown siblings to accept (default: the settings', 0.05)")
    parser.add_argument("--unknown", default=None, help="a folder of photos that must be rejected: extra "
                                                        "impostor samples")
    parser.add_argument("--plot", default=None, help="write the genuine/impostor curves to this PNG")
    parser.add_argument("--params", default=None, help="a rec_system params.py to take settings from")
    parser.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                        help="a setting, as for build")
    parser.set_defaults(run=calibrate)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="clas-gallery", description="Build or inspect a rec_system gallery.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="embed a PaddleClas gallery list into a new gallery")
    build_parser.add_argument("--data-file", required=True, help="'image path<delimiter>label' per line")
    build_parser.add_argument("--image-root", required=True, help="folder the list's paths are relative to")
    build_parser.add_argument("--index-dir", required=True, help="new gallery folder (must not hold one)")
    build_parser.add_argument("--delimiter", default=None, type=escaped_text,
                              help="between path and label, escapes allowed (default: '\\t', a tab)")
    build_parser.add_argument("--params", default=None, help="a rec_system params.py to take settings from")
    build_parser.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                              help="a setting, e.g. --set feature_norm=false --set index_method=Flat")
    build_parser.set_defaults(run=build)
    import_parser = commands.add_parser("import", help="a PaddleClas index (vector.index + id_map.pkl) into a "
                                                       "new gallery")
    import_parser.add_argument("--paddleclas-index", required=True, help="folder holding vector.index and id_map.pkl")
    import_parser.add_argument("--index-dir", required=True, help="new gallery folder (must be empty or absent)")
    import_parser.add_argument("--delimiter", default=None, type=escaped_text,
                               help="between path and label in id_map's lines (default: '\\t', a tab)")
    import_parser.add_argument("--params", default=None, help="a rec_system params.py naming the feature model "
                                                              "that built the index")
    import_parser.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                               help="a setting, e.g. --set preset=null --set model_dir=/models/rec")
    import_parser.set_defaults(run=import_index)
    export_parser = commands.add_parser("export", help="a gallery as a PaddleClas index folder")
    export_parser.add_argument("--index-dir", required=True, help="the gallery (opened read-only)")
    export_parser.add_argument("--paddleclas-index", required=True, help="folder to write vector.index and "
                                                                         "id_map.pkl into")
    export_parser.add_argument("--delimiter", default=None, type=escaped_text,
                               help="between id and label in id_map's lines (default: '\\t', a tab)")
    export_parser.set_defaults(run=export_index)
    migrate_parser = commands.add_parser("migrate", help="copy a gallery between faiss and Milvus, then check it")
    migrate_parser.add_argument("--to", required=True, choices=("milvus", "faiss"))
    migrate_parser.add_argument("--index-dir", required=True,
                                help="the faiss gallery: the source with --to milvus, a new folder with --to faiss")
    migrate_parser.add_argument("--milvus-uri", required=True, help="e.g. http://127.0.0.1:19530")
    migrate_parser.add_argument("--collection", default="rec_system_gallery",
                                help="the source with --to faiss, a new collection with --to milvus")
    migrate_parser.add_argument("--token", default=None, help="Milvus 'user:password' or API key")
    migrate_parser.add_argument("--milvus-index-type", default="FLAT", help="index of a new collection")
    migrate_parser.add_argument("--index-method", default="HNSW32", choices=INDEX_METHODS,
                                help="index of a new faiss gallery")
    migrate_parser.set_defaults(run=migrate)
    stats_parser = commands.add_parser("stats", help="what a gallery holds (opened read-only)")
    stats_parser.add_argument("--index-dir", required=True)
    stats_parser.set_defaults(run=stats)
    add_curation_commands(commands, settings_from_args, parse_assignment)
    add_calibration_command(commands)
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (ParamsError, ClasSystemError, OSError) as err:
        print(f"clas-gallery: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
