"""The `clas-client` command line: its commands, their options, and the argument types."""
import argparse
import codecs
import os

from ..http_client import TASK_MODULES

COMMANDS = ("classify", "detect", "recognize", "gallery", "video")
DEFAULT_URL = os.environ.get("CLAS_URL", "http://127.0.0.1:8866")


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
    recognize.add_argument("--score-thres", type=float, default=None,
                           help="lowest score a region is recognised at (server default)")
    recognize.add_argument("--return-k", type=positive_int, default=None,
                           help="gallery hits searched per region (server default)")
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

    add_video_command(commands)
    return parser


def add_video_command(commands):
    video = commands.add_parser("video", help="every Nth frame of a video file or camera through a module")
    video.add_argument("source", metavar="SOURCE", help="a video file, or a camera index such as 0")
    video.add_argument("--task", choices=tuple(TASK_MODULES), default="classify",
                       help="classify (clas_system), detect (det_system) or recognize (rec_system); "
                            "default: %(default)s")
    video.add_argument("--every", type=positive_int, default=1, help="take every Nth frame (default: every frame)")
    video.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many processed frames")
    video.add_argument("--save-video", metavar="FILE", default=None,
                       help="also write the processed frames with results drawn (.mp4, .avi or .mkv)")
    video.add_argument("--top-k", type=positive_int, default=None, help="classify: classes per frame")
    video.add_argument("--threshold", type=unit_interval, default=None, help="detect: lowest box score")
    add_common(video, output_formats=("jsonl",))
