"""`clas-gallery` commands for curating a gallery (faiss --index-dir, or Milvus --milvus-uri):

    clas-gallery list --index-dir /srv/gallery [--label L] [--query TEXT] [--offset N] [--limit N]
    clas-gallery relabel --index-dir /srv/gallery (--ids 3 7 | --labels old) --label new
    clas-gallery thumbnail --index-dir /srv/gallery --ids 3 7 --out thumbs/     # thumbs/3.jpg ...
    clas-gallery reembed --index-dir /srv/gallery --to-preset dinov2_vits14 [--set model_dir=...]

reembed (faiss) builds the gallery again from the regions it kept, for the feature model of
--to-preset / --params / --set, beside the live one, and switches when done (gallery.reembed).
"""
import sys
from pathlib import Path

from params.gallery import MilvusSettings

from .gallery import open_faiss_gallery, open_milvus_gallery
from .gallery.kept_images import THUMBNAIL
from .gallery.reembed import reembed_gallery
from .tasks.features import build_feature_extractor


def add_location(parser):
    parser.add_argument("--index-dir", default=None, help="a faiss gallery folder")
    parser.add_argument("--milvus-uri", default=None, help="or a Milvus server, e.g. http://127.0.0.1:19530")
    parser.add_argument("--collection", default="rec_system_gallery", help="the Milvus collection")
    parser.add_argument("--token", default=None, help="Milvus 'user:password' or API key")


def open_location(args, read_only):
    if (args.index_dir is None) == (args.milvus_uri is None):
        raise SystemExit(f"clas-gallery {args.command}: give --index-dir (faiss) or --milvus-uri (Milvus)")
    if args.index_dir is not None:
        return open_faiss_gallery(args.index_dir, read_only=read_only)
    return open_milvus_gallery(MilvusSettings(uri=args.milvus_uri, collection=args.collection, token=args.token))


def list_items(args):
    with open_location(args, read_only=True) as gallery:
        items, total = gallery.list_items(offset=args.offset, limit=args.limit, label=args.label, text=args.query)
    return {"items": [item._asdict() for item in items], "total": total}


def relabel(args):
    if (args.ids is None) == (args.labels is None):
        raise SystemExit("clas-gallery relabel: give --ids or --labels (not both), and --label")
    with open_location(args, read_only=False) as gallery:
        return {"relabelled": gallery.relabel(args.label, ids=args.ids, labels=args.labels)}


def thumbnails(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open_location(args, read_only=True) as gallery:
        blobs = gallery.side.get(THUMBNAIL, args.ids)
    written = []
    for item_id, data in zip(args.ids, blobs):
        if data is not None:
            (out / f"{item_id}.jpg").write_bytes(data)
            written.append(str(out / f"{item_id}.jpg"))
    return {"written": written, "without_thumbnail": [i for i, data in zip(args.ids, blobs) if data is None]}


def reembed(args, settings_from_args):
    if args.to_preset is not None:
        args.set.append(("preset", args.to_preset))
    settings = settings_from_args(args)
    extractor = build_feature_extractor(settings.feature)
    return reembed_gallery(settings.gallery.index_dir, extractor, skip_missing=args.skip_missing,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))


def add_curation_commands(commands, settings_from_args, parse_assignment):
    list_parser = commands.add_parser("list", help="a page of a gallery's items (id order)")
    add_location(list_parser)
    list_parser.add_argument("--label", default=None)
    list_parser.add_argument("--query", default=None, help="text in the label or doc (case-sensitive)")
    list_parser.add_argument("--offset", type=int, default=0)
    list_parser.add_argument("--limit", type=int, default=50)
    list_parser.set_defaults(run=list_items)
    relabel_parser = commands.add_parser("relabel", help="give items (by id or label) a new label")
    add_location(relabel_parser)
    relabel_parser.add_argument("--ids", type=int, nargs="+", default=None)
    relabel_parser.add_argument("--labels", nargs="+", default=None)
    relabel_parser.add_argument("--label", required=True, help="the new label")
    relabel_parser.set_defaults(run=relabel)
    thumb_parser = commands.add_parser("thumbnail", help="write items' kept thumbnails as OUT/<id>.jpg")
    add_location(thumb_parser)
    thumb_parser.add_argument("--ids", type=int, nargs="+", required=True)
    thumb_parser.add_argument("--out", required=True, help="folder to write into")
    thumb_parser.set_defaults(run=thumbnails)
    reembed_parser = commands.add_parser("reembed", help="rebuild a faiss gallery for another feature model from "
                                                         "its kept regions, then switch to it")
    reembed_parser.add_argument("--index-dir", required=True, help="the live gallery")
    reembed_parser.add_argument("--to-preset", default=None, help="the new feature preset, e.g. dinov2_vits14")
    reembed_parser.add_argument("--params", default=None, help="a rec_system params.py naming the new model")
    reembed_parser.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                                help="a setting of the new model, e.g. --set preset=null --set model_dir=/models/rec")
    reembed_parser.add_argument("--skip-missing", action="store_true",
                                help="leave out items that kept no region (else reembed refuses)")
    reembed_parser.set_defaults(run=lambda args: reembed(args, settings_from_args))
