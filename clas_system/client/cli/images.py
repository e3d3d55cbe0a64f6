"""The image commands (classify, detect, recognize, gallery add / import / search) and the
gallery commands without images: chunks of images as requests, --workers of them in flight,
records written in input order as they complete. A request the server refuses as a whole is
sent again one image at a time, so a bad image fails alone and is named."""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..encode import b64encode_image
from ..errors import ClientError, ServerUnusable, error_text, is_fatal
from ..http_client import TASK_MODULES, Client
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


def save_picture(outcome, folder):
    from ..visualize import draw_result  # Pillow, only when pictures are asked for

    target = Path(folder) / outcome.image.name
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_result(outcome.data, outcome.result).save(target)


def image_command_setup(args):
    """(module, payload_for(images) -> request fields, answer key) for the image commands."""
    if args.command == "classify":
        extra = {"top_k": args.top_k} if args.top_k is not None else {}
        return args.module or TASK_MODULES["classify"], lambda images: dict(extra), "prediction"
    if args.command == "detect":
        extra = {"threshold": args.threshold} if args.threshold is not None else {}
        return args.module or TASK_MODULES["detect"], lambda images: dict(extra), "prediction"
    if args.command == "recognize":
        return args.module or TASK_MODULES["recognize"], lambda images: {}, "prediction"
    if args.action == "search":
        return args.module or TASK_MODULES["recognize"], lambda images: {"gallery": "search", "k": args.k}, "hits"
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


def run_command(args, out):
    client = Client(args.url, timeout=args.timeout, token=args.token)
    gallery_action = getattr(args, "action", None)
    if gallery_action in ("stats", "save", "remove"):
        payload = {"gallery": gallery_action}
        if gallery_action == "remove":
            payload.update({"ids": args.ids} if args.ids else {"labels": args.labels})
        try:
            result = client.call(args.module or TASK_MODULES["recognize"], payload)
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
        return run_images(args, client, images, args.module or TASK_MODULES["recognize"],
                          add_payload(labels, args.doc), "ids", "add", out,
                          shape_result=lambda image, gallery_id: {"id": gallery_id, "label": labels[image.path]})
    images = expand_inputs(args.paths)
    module, payload_for, key = image_command_setup(args)
    return run_images(args, client, images, module, payload_for, key,
                      "search" if gallery_action == "search" else args.command, out)
