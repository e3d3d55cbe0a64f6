"""The image commands (classify, detect, recognize, gallery add / import / search) and the
gallery commands without images: chunks of images as requests, --workers of them in flight,
records written in input order as they complete. A request the server refuses as a whole is
sent again one image at a time, so a bad image fails alone and is named."""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClientError, ServerUnusable, error_text, is_fatal
from ..http_client import Client
from ..in_flight import ordered_bounded_map
from .inputs import InputImage, expand_inputs, gallery_list_images, labels_for
from .records import RecordWriter


def chunks(sequence, size):
    return [sequence[start:start + size] for start in range(0, len(sequence), size)]


@dataclass
class Outcome:
    image: InputImage
    result: object = None  # the module's answer for this image
    error: str = None
    data: bytes = None  # the encoded file, kept for --save-vis


def send(ask, outcomes):
    """One request for the outcomes' images; fills each outcome's result."""
    answers = ask([o.data for o in outcomes], [o.image for o in outcomes])
    for outcome, answer in zip(outcomes, answers):
        outcome.result = answer


def run_chunk(ask, chunk):
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
            send(ask, readable)
    except ClientError as err:
        if is_fatal(err):
            raise ServerUnusable(str(err)) from err
        for outcome in readable:
            try:
                send(ask, [outcome])
            except ClientError as single_err:
                if is_fatal(single_err):
                    raise ServerUnusable(str(single_err)) from single_err
                outcome.error = error_text(single_err)
    return outcomes


def save_picture(outcome, folder):
    from ..visualize import draw_result  # Pillow, only when pictures are asked for

    target = Path(folder) / outcome.image.name
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_result(outcome.data, outcome.result).save(target)


def image_request(client, args):
    """ask(data, inputs) -> one answer per image: the command's client call for one request's
    images (their encoded files, and the InputImages they came from)."""
    module = args.module  # None: the command's usual module
    if args.command == "classify":
        return lambda data, inputs: client.classify(data, top_k=args.top_k, module=module)
    if args.command == "detect":
        return lambda data, inputs: client.detect(data, threshold=args.threshold, module=module)
    if args.command == "recognize":
        return lambda data, inputs: client.recognize(data, score_thres=args.score_thres, return_k=args.return_k,
                                                     module=module)
    if args.action == "search":
        return lambda data, inputs: client.gallery("search", images=data, k=args.k, module=module)["hits"]
    raise ValueError(f"not an image command: {args.command}")


def add_request(client, args, labels):
    """ask(data, inputs) -> gallery ids: a gallery add of the images under their labels (never
    retried: an add the server applied but whose answer was lost would be applied twice)."""
    def ask(data, inputs):
        docs = {"docs": [args.doc] * len(data)} if args.doc is not None else {}
        return client.gallery("add", images=data, labels=[labels[image.path] for image in inputs],
                              module=args.module, **docs)["ids"]
    return ask


def run_images(args, images, ask, record_command, out, shape_result=None):
    """Every chunk through the server with --workers requests in flight; records written in
    input order as they complete. shape_result(image, answer) turns an answer into the record's
    result. -> number of failed images."""
    from tqdm import tqdm

    writer = RecordWriter(out, record_command, args.format)
    save_vis = getattr(args, "save_vis", None)
    failed = 0

    def job(chunk):
        outcomes = run_chunk(ask, chunk)
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


def run_command(args, out):
    client = Client(args.url, timeout=args.timeout, token=args.token,
                    images_per_request=getattr(args, "batch_size", 16))
    gallery_action = getattr(args, "action", None)
    if gallery_action in ("stats", "save", "remove"):
        which = {"ids": args.ids} if getattr(args, "ids", None) else {"labels": getattr(args, "labels", ())}
        try:
            result = client.gallery(gallery_action, module=args.module, **which)
        except ClientError as err:
            raise ServerUnusable(str(err)) from err
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        return 0  # no image failed
    if gallery_action in ("add", "import"):
        if gallery_action == "add":
            images = expand_inputs(args.paths)
            labels = labels_for(images, args)
        else:
            images, labels = gallery_list_images(args)
        return run_images(args, images, add_request(client, args, labels), "add", out,
                          shape_result=lambda image, gallery_id: {"id": gallery_id, "label": labels[image.path]})
    images = expand_inputs(args.paths)
    return run_images(args, images, image_request(client, args),
                      "search" if gallery_action == "search" else args.command, out)
