"""`clas-gallery`: build a rec_system gallery offline, or show what one holds.

    clas-gallery build --data-file gallery_list.txt --image-root images/ --index-dir /srv/gallery
    clas-gallery stats --index-dir /srv/gallery

Features are made exactly as rec_system makes them: the same settings schema, read from a
rec_system params.py (--params) and adjusted with --set KEY=VALUE (flat keys as in config.json's
init_args, values as JSON), so the built gallery opens under `hub serving start -m rec_system`.
"""
import argparse
import codecs
import json
import runpy
import sys

from params.recognition import load_recognition_settings
from params.schema import ParamsError

from .codec import ImageError
from .features import build_feature_extractor
from .gallery import GalleryError, open_gallery
from .predictor import ModelError
from .preprocess import PreprocessError
from .gallery_startup import build_gallery, holds_gallery


def parse_assignment(text):
    """KEY=VALUE with VALUE as JSON when it parses (false, 4, "x", [224, 224]), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def read_params_file(path):
    """The PARAMS dict of a rec_system params.py."""
    params = runpy.run_path(path).get("PARAMS")
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: defines no PARAMS dict")
    return params


def settings_from_args(args):
    overrides = dict(args.set)
    flags = {"index_dir": args.index_dir, "data_file": getattr(args, "data_file", None),
             "image_root": getattr(args, "image_root", None), "delimiter": getattr(args, "delimiter", None)}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    module_params = read_params_file(args.params) if args.params else {}
    return load_recognition_settings(module_params, overrides, where="clas-gallery")


def build(args):
    settings = settings_from_args(args)
    if settings.gallery.data_file is None:
        raise ParamsError("clas-gallery: --data-file is required to build a gallery")
    if holds_gallery(settings.gallery.index_dir):
        raise GalleryError(f"{settings.gallery.index_dir} already holds a gallery; remove it first or choose "
                           f"another --index-dir")
    extractor = build_feature_extractor(settings.feature)
    with build_gallery(settings.gallery, extractor) as gallery:
        return gallery.stats()


def stats(args):
    with open_gallery(args.index_dir, read_only=True) as gallery:
        return gallery.stats()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="clas-gallery", description="Build or inspect a rec_system gallery.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="embed a PaddleClas gallery list into a new gallery")
    build_parser.add_argument("--data-file", required=True, help="'image path<delimiter>label' per line")
    build_parser.add_argument("--image-root", required=True, help="folder the list's paths are relative to")
    build_parser.add_argument("--index-dir", required=True, help="new gallery folder (must not hold one)")
    build_parser.add_argument("--delimiter", default=None, type=lambda text: codecs.decode(text, "unicode_escape"),
                              help="between path and label, escapes allowed (default: '\\t', a tab)")
    build_parser.add_argument("--params", default=None, help="a rec_system params.py to take settings from")
    build_parser.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                              help="a setting, e.g. --set feature_norm=false --set index_method=Flat")
    build_parser.set_defaults(run=build)
    stats_parser = commands.add_parser("stats", help="what a gallery holds (opened read-only)")
    stats_parser.add_argument("--index-dir", required=True)
    stats_parser.set_defaults(run=stats)
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (ParamsError, GalleryError, ModelError, ImageError, PreprocessError, OSError) as err:
        print(f"clas-gallery: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
