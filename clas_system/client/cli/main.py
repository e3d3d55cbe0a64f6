"""`clas-client`'s entry point: parse, run, and say how it went in the exit status."""
import sys
from pathlib import Path

from ..errors import ServerUnusable
from .arguments import COMMANDS, build_parser
from .images import run_command
from .inputs import InputError
from .video_command import run_video_command

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3


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


