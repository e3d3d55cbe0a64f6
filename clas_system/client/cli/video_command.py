"""`clas-client video`: one JSON line per processed frame (client.video does the work; OpenCV is
imported only when this command runs)."""
import json
import sys

from ..http_client import Client
from .inputs import InputError


def run_video_command(args, out):
    """-> number of failed frames."""
    from tqdm import tqdm

    from ..video import VideoError, frame_record, process_video

    client = Client(args.url, timeout=args.timeout, token=args.token, images_per_request=args.batch_size)
    with tqdm(unit="frame", file=sys.stderr, disable=args.quiet, dynamic_ncols=True) as bar:
        def on_frame(frame):
            out.write(json.dumps(frame_record(frame), ensure_ascii=False) + "\n")
            out.flush()
            if frame.error is not None:
                tqdm.write(f"clas-client: frame {frame.index}: {frame.error}", file=sys.stderr)
            bar.update(1)

        try:
            _, failed = process_video(client, args.source, task=args.task, every=args.every,
                                      batch_size=args.batch_size, workers=args.workers, module=args.module,
                                      top_k=args.top_k, threshold=args.threshold, max_frames=args.max_frames,
                                      save_video=args.save_video, on_frame=on_frame)
        except VideoError as err:
            raise InputError(str(err)) from None
    return failed
