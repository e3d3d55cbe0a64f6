"""`clas-client`: run a served module over files, folders and globs from the shell.

    clas-client classify photos/ --top-k 3                    # one JSON line per image
    clas-client detect 'shelf/*.jpg' --save-vis out/           # boxes drawn into out/
    clas-client recognize query.jpg --format csv -o hits.csv
    clas-client gallery add products/cola/*.jpg --label cola
    clas-client gallery import gallery_list.txt --image-root images/
    clas-client gallery search query.jpg --k 5
    clas-client gallery remove --labels cola
    clas-client gallery stats
    clas-client video clip.mp4 --every 5 --save-video annotated.mp4   (see clas_system.video)

Exit codes: 0 every input succeeded; 1 some inputs failed (each named on stderr and as an
"error" record; the other results are still written); 2 bad command line or no input found;
3 the server could not be used at all (unreachable, token refused, or it refused a gallery
command).
"""
import argparse
import codecs
import csv
import glob
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .client import Client, ClientError, ServerError, ServerUnreachable, UnauthorizedError
from .codec import b64encode_image

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
GLOB_CHARS = "*?["
COMMANDS = ("classify", "detect", "recognize", "gallery", "video")
DEFAULT_URL = os.environ.get("CLAS_URL", "http://127.0.0.1:8866")


class InputError(ValueError):
    """The command line names no usable input (a missing file, an empty folder or glob)."""


class ServerUnusable(RuntimeError):
    """The server cannot serve this run at all: going on would fail every request the same way."""


@dataclass(frozen=True)
class InputImage:
    path: str  # as found, used in output records
    name: str  # relative to the folder or glob it came from: the --save-vis file name


def is_image_file(name):
    return name.lower().endswith(IMAGE_SUFFIXES)


def folder_images(folder):
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files) if is_image_file(name))
    return [InputImage(path, os.path.relpath(path, folder)) for path in found]


def glob_images(pattern):
    base = pattern
    while any(char in base for char in GLOB_CHARS):
        base = os.path.dirname(base)
    matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p) and is_image_file(p))
    return [InputImage(path, os.path.relpath(path, base or ".")) for path in matches]


def expand_inputs(specs):
    """Files as given, folders walked (sorted), globs expanded -> [InputImage]. A spec that
    finds nothing raises InputError naming it."""
    images = []
    for spec in specs:
        if os.path.isdir(spec):
            found = folder_images(spec)
        elif any(char in spec for char in GLOB_CHARS) and not os.path.exists(spec):
            found = glob_images(spec)
        elif os.path.isfile(spec):
            found = [InputImage(spec, os.path.basename(spec))]
        else:
            raise InputError(f"{spec}: no such file or folder")
        if not found:
            raise InputError(f"{spec}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        images.extend(found)
    return images


def ordered_bounded_map(function, items, workers):
    """function over items on `workers` threads; results in input order, at most 2 * workers
    submitted ahead, so a long input never piles up in memory."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def chunks(sequence, size):
    return [sequence[start:start + size] for start in range(0, len(sequence), size)]


def is_fatal(err):
    """Errors that would hit every request alike: no server (after the client's retries), or no
    access to it."""
    return isinstance(err, (ServerUnreachable, UnauthorizedError))


def error_text(err):
    return err.message if isinstance(err, ServerError) else str(err)


# ---- one chunk of images -> one request --------------------------------------------------------


@dataclass
class Outcome:
    image: InputImage
    result: object = None  # the module's answer for this image
    error: str = None
    data: bytes = None  # the encoded file, kept for --save-vis


def send(client, module, payload_for, key, outcomes):
    """One request for the outcomes' images; fills each outcome's result."""
    payload = payload_for([o.image for o in outcomes])
    payload["images"] = [b64encode_image(o.data) for o in outcomes]
    # An add the server applied but whose answer was lost would be applied twice if retried.
    answers = client.call(module, payload, idempotent=payload.get("gallery") != "add")[key]
    for outcome, answer in zip(outcomes, answers):
        outcome.result = answer


def run_chunk(client, module, payload_for, key, chunk):
    """Read, send and (when the server refuses the whole request) retry one by one, so a bad
    image fails alone and is named. -> [Outcome] in chunk order."""
    outcomes = [Outcome(image) for image in chunk]
    readable = []
    for outcome in outcomes:
        try:
            outcome.data = Path(outcome.image.path).read_bytes()
            readable.append(outcome)
        except OSError as err:
            outcome.error = f"cannot read: {err.strerror or err}"
    try:
        if readable:
            send(client, module, payload_for, key, readable)
    except ClientError as err:
        if is_fatal(err):
            raise ServerUnusable(str(err)) from err
        for outcome in readable:
            try:
                send(client, module, payload_for, key, [outcome])
            except ClientError as single_err:
                if is_fatal(single_err):
                    raise ServerUnusable(str(single_err)) from single_err
                outcome.error = error_text(single_err)
    return outcomes


# ---- output --------------------------------------------------------------------------------------

CSV_COLUMNS = {
    "classify": ("file", "rank", "class_id", "label", "score", "error"),
    "detect": ("file", "x1", "y1", "x2", "y2", "label", "score", "error"),
    "recognize": ("file", "x1", "y1", "x2", "y2", "label", "score", "id", "error"),
    "search": ("file", "rank", "id", "label", "doc", "score", "error"),
    "add": ("file", "id", "label", "error"),
}


def json_record(command, outcome):
    if outcome.error is not None:
        return {"file": outcome.image.path, "error": outcome.error}
    if command == "classify":
        return {"file": outcome.image.path, **outcome.result}
    if command in ("detect", "recognize"):
        return {"file": outcome.image.path, "regions": outcome.result}
    if command == "search":
        return {"file": outcome.image.path, "hits": outcome.result}
    return {"file": outcome.image.path, **outcome.result}


def csv_rows(command, outcome):
    path = outcome.image.path
    if outcome.error is not None:
        return [{"file": path, "error": outcome.error}]
    result = outcome.result
    if command == "classify":
        names = result.get("label_names") or [""] * len(result["class_ids"])
        return [{"file": path, "rank": rank, "class_id": class_id, "label": name, "score": score}
                for rank, (class_id, name, score) in enumerate(zip(result["class_ids"], names, result["scores"]), 1)]
    if command in ("detect", "recognize"):
        return [{"file": path, **dict(zip(("x1", "y1", "x2", "y2"), region["bbox"])),
                 "label": region.get("rec_docs", region.get("label")),
                 "score": region.get("rec_scores", region.get("score")),
                 **({"id": region.get("rec_id")} if command == "recognize" else {})}
                for region in result] or [{"file": path}]
    if command == "search":
        return [{"file": path, "rank": rank, **hit} for rank, hit in enumerate(result, 1)] or [{"file": path}]
    return [{"file": path, **result}]


class RecordWriter:
    """JSON lines (one object per image) or CSV (one row per top-k entry / region / hit)."""

    def __init__(self, stream, command, output_format):
        self.stream = stream
        self.command = command
        self.csv = None
        if output_format == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=CSV_COLUMNS[command], extrasaction="ignore")
            self.csv.writeheader()

    def write(self, outcome):
        if self.csv is not None:
            self.csv.writerows(csv_rows(self.command, outcome))
        else:
            self.stream.write(json.dumps(json_record(self.command, outcome), ensure_ascii=False) + "\n")
        self.stream.flush()


def save_picture(outcome, folder):
    from .visualize import draw_result

    target = Path(folder) / outcome.image.name
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_result(outcome.data, outcome.result).save(target)


# ---- commands ------------------------------------------------------------------------------------


def image_command_setup(args):
    """(module, payload_for(images) -> request fields, answer key) for the image commands."""
    if args.command == "classify":
        extra = {"top_k": args.top_k} if args.top_k is not None else {}
        return args.module or "clas_system", lambda images: dict(extra), "prediction"
    if args.command == "detect":
        extra = {"threshold": args.threshold} if args.threshold is not None else {}
        return args.module or "det_system", lambda images: dict(extra), "prediction"
    if args.command == "recognize":
        return args.module or "rec_system", lambda images: {}, "prediction"
    if args.action == "search":
        return args.module or "rec_system", lambda images: {"gallery": "search", "k": args.k}, "hits"
    raise ValueError(f"not an image command: {args.command}")


def add_payload(labels, doc):
    def payload_for(images):
        payload = {"gallery": "add", "labels": [labels[image.path] for image in images]}
        if doc is not None:
            payload["docs"] = [doc] * len(images)
        return payload
    return payload_for


def run_images(args, client, images, module, payload_for, key, record_command, out, shape_result=None):
    """Every chunk through the server with --workers requests in flight; records written in
    input order as they complete. shape_result(image, answer) turns an answer into the record's
    result. -> number of failed images."""
    from tqdm import tqdm

    writer = RecordWriter(out, record_command, args.format)
    save_vis = getattr(args, "save_vis", None)
    failed = 0

    def job(chunk):
        outcomes = run_chunk(client, module, payload_for, key, chunk)
        for outcome in outcomes:
            if outcome.error is None and shape_result is not None:
                outcome.result = shape_result(outcome.image, outcome.result)
            if outcome.error is None and save_vis:
                save_picture(outcome, save_vis)
        return outcomes

    with tqdm(total=len(images), unit="img", file=sys.stderr, disable=args.quiet, dynamic_ncols=True) as bar:
        for outcomes in ordered_bounded_map(job, chunks(images, args.batch_size), args.workers):
            for outcome in outcomes:
                writer.write(outcome)
                if outcome.error is not None:
                    failed += 1
                    tqdm.write(f"clas-client: {outcome.image.path}: {outcome.error}", file=sys.stderr)
            bar.update(len(outcomes))
    return failed


def labels_for(images, args):
    if args.label is not None:
        return {image.path: args.label for image in images}
    return {image.path: os.path.basename(os.path.dirname(os.path.abspath(image.path))) for image in images}


def gallery_list_images(args):
    """A PaddleClas gallery list -> ([InputImage], {path: label}); errors name the line."""
    from .gallery import GalleryError, read_gallery_list

    try:
        entries = read_gallery_list(args.list_file, args.image_root, args.delimiter)
    except GalleryError as err:
        raise InputError(str(err)) from None
    if not entries:
        raise InputError(f"{args.list_file}: no entries")
    images = [InputImage(path, os.path.relpath(path, args.image_root)) for path, _ in entries]
    return images, {path: label for path, label in entries}


def run_command(args, out):
    client = Client(args.url, timeout=args.timeout, token=args.token)
    gallery_action = getattr(args, "action", None)
    if gallery_action in ("stats", "save", "remove"):
        payload = {"gallery": gallery_action}
        if gallery_action == "remove":
            payload.update({"ids": args.ids} if args.ids else {"labels": args.labels})
        try:
            result = client.call(args.module or "rec_system", payload)
        except ClientError as err:
            raise ServerUnusable(str(err)) from err
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        return 0
    if gallery_action in ("add", "import"):
        if gallery_action == "add":
            images = expand_inputs(args.paths)
            labels = labels_for(images, args)
        else:
            images, labels = gallery_list_images(args)
        return run_images(args, client, images, args.module or "rec_system", add_payload(labels, args.doc), "ids",
                          "add", out, shape_result=lambda image, gallery_id: {"id": gallery_id,
                                                                              "label": labels[image.path]})
    images = expand_inputs(args.paths)
    module, payload_for, key = image_command_setup(args)
    return run_images(args, client, images, module, payload_for, key,
                      "search" if gallery_action == "search" else args.command, out)


# ---- command line --------------------------------------------------------------------------------


def add_common(parser, images=True, output_formats=("jsonl", "csv")):
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default: $CLAS_URL or %(default)s)")
    parser.add_argument("--module", default=None, help="served module name, if not the command's usual one")
    parser.add_argument("--token", default=os.environ.get("CLAS_API_TOKEN"),
                        help="api_token of the server (default: $CLAS_API_TOKEN)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("-o", "--output", default="-", help="write results here (default: standard output)")
    if images:
        parser.add_argument("--format", choices=output_formats, default="jsonl",
                            help="jsonl: one JSON object per input; csv: one row per result (default: jsonl)")
        parser.add_argument("--workers", type=positive_int, default=2, help="requests in flight (default: 2)")
        parser.add_argument("--batch-size", type=positive_int, default=16, help="images per request (default: 16)")
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def unit_interval(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


PATHS_HELP = "image files, folders (searched recursively) or quoted globs such as 'shots/**/*.jpg'"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="clas-client", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send images to a running paddleclas-serving server (hub serving start) and write one result "
                    "per image.",
        epilog="examples:\n"
               "  clas-client classify photos/ --top-k 3\n"
               "  clas-client detect 'shelf/*.jpg' --save-vis boxes/\n"
               "  clas-client recognize query.jpg --format csv -o result.csv\n"
               "  clas-client gallery add products/cola/ --label cola\n"
               "  clas-client gallery import gallery_list.txt --image-root images/\n"
               "  clas-client gallery search query.jpg --k 5\n"
               "  clas-client gallery remove --labels cola\n"
               "  clas-client video clip.mp4 --every 5 --save-video annotated.mp4\n\n"
               "exit codes: 0 all inputs succeeded; 1 some inputs failed (named on stderr, other results still\n"
               "written); 2 bad command line or no input found; 3 the server could not be used (unreachable,\n"
               "token refused).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="top-k classes per image (clas_system)")
    classify.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    classify.add_argument("--top-k", type=positive_int, default=None, help="classes per image (server default)")
    classify.add_argument("--save-vis", metavar="DIR", help="also write each image with its top-k drawn into DIR")
    add_common(classify)

    detect = commands.add_parser("detect", help="boxes per image (det_system)")
    detect.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    detect.add_argument("--threshold", type=unit_interval, default=None, help="lowest box score (server default)")
    detect.add_argument("--save-vis", metavar="DIR", help="also write each image with its boxes drawn into DIR")
    add_common(detect)

    recognize = commands.add_parser("recognize", help="recognised boxes, labels and scores per image (rec_system)")
    recognize.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    recognize.add_argument("--save-vis", metavar="DIR", help="also write each image with boxes and labels into DIR")
    add_common(recognize)

    gallery = commands.add_parser("gallery", help="change or query rec_system's gallery")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add images under a label")
    add.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    add.add_argument("--label", default=None, help="label of every image (default: each image's folder name)")
    add.add_argument("--doc", default=None, help="a note stored with every added image")
    add_common(add)
    imported = actions.add_parser("import", help="add every image of a PaddleClas gallery list (path<TAB>label)")
    imported.add_argument("list_file", metavar="LIST", help="one 'relative/path<TAB>label' per line")
    imported.add_argument("--image-root", required=True, help="folder the list's paths are relative to")
    imported.add_argument("--delimiter", default="\t", type=lambda text: codecs.decode(text, "unicode_escape"),
                          help="between path and label, escapes allowed (default: a tab)")
    imported.add_argument("--doc", default=None, help="a note stored with every added image")
    add_common(imported)
    search = actions.add_parser("search", help="nearest gallery items per image")
    search.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    search.add_argument("--k", type=positive_int, default=5, help="hits per image (default: %(default)s)")
    add_common(search)
    remove = actions.add_parser("remove", help="remove items by id, or every item of some labels")
    which = remove.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", nargs="+", type=int, help="gallery ids (as 'gallery add' printed them)")
    which.add_argument("--labels", nargs="+", help="remove every item with these labels")
    add_common(remove, images=False)
    for action, text in (("stats", "how many items and labels the gallery holds"),
                         ("save", "compact the gallery's log into its snapshot")):
        add_common(actions.add_parser(action, help=text), images=False)

    from .video import add_video_command
    add_video_command(commands, add_common)
    return parser


def open_output(path):
    if path == "-":
        return sys.stdout
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8", newline="")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        argv.insert(0, "classify")  # the first release's `clas-client photos/ --top-k 3`
    args = parser.parse_args(argv)
    out = open_output(args.output)
    try:
        if args.command == "video":
            from .video import run_video_command
            failed = run_video_command(args, out)
        else:
            failed = run_command(args, out)
    except InputError as err:
        print(f"clas-client: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ServerUnusable as err:
        print(f"clas-client: error: the server at {args.url} cannot be used: {err}", file=sys.stderr)
        return EXIT_SERVER
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        print(f"clas-client: {failed} input(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
