"""Every 5th frame of a video (or camera 0) through a running module, one JSON line per frame,
and an annotated copy of the processed frames.

    hub serving start -m clas_system          # in another shell
    python client_examples/video_frames.py clip.mp4 --task classify --save-video annotated.mp4
    python client_examples/video_frames.py 0 --max-frames 100      # camera 0

The same as `clas-client video clip.mp4 --every 5 --save-video annotated.mp4`.
"""
import argparse
import json

from clas_system import Client
from clas_system.client.http_client import TASK_MODULES
from clas_system.client.video import frame_record, process_video


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a video file or a camera index")
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    parser.add_argument("--task", choices=tuple(TASK_MODULES), default="classify")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--save-video", default=None)
    args = parser.parse_args()

    done, failed = process_video(Client(args.url), args.source, task=args.task, every=args.every,
                                 max_frames=args.max_frames, save_video=args.save_video,
                                 on_frame=lambda frame: print(json.dumps(frame_record(frame), ensure_ascii=False)))
    print(json.dumps({"frames": done, "failed": failed}))


if __name__ == "__main__":
    main()
