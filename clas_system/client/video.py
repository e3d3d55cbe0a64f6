"""Video through a served module: every Nth frame of a file or camera, sent in batches with a
bounded number of requests in flight, one JSON line per frame, optionally an annotated video.

    clas-client video clip.mp4 --task detect --every 5 --save-video boxes.mp4 -o frames.jsonl
    clas-client video 0 --task classify --max-frames 300          # camera 0

Frames go to the server as JPEG (quality 95): a tenth of PNG's bytes, and what a camera gives.
The annotated video holds the processed frames only, at the source's frame rate divided by
--every, so it plays at the source's speed.
"""
import os
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ClientError, ServerUnusable, error_text, is_fatal
from .http_client import TASK_MODULES
from .in_flight import batched, ordered_bounded_map
from .visualize import draw_result

JPEG_QUALITY = 95
FALLBACK_FPS = 25.0  # cameras and some files report 0
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoError(ValueError):
    """The video source or the output cannot be opened; the message names it."""


@dataclass
class Frame:
    index: int  # position in the source, from 0
    time_s: float
    rgb: object  # HWC uint8
    jpeg: bytes
    result: object = None
    error: str = None


def open_capture(source):
    """A file path, or a camera index given as digits ('0')."""
    capture = cv2.VideoCapture(int(source) if str(source).isdigit() else str(source))
    if not capture.isOpened():
        what = "camera" if str(source).isdigit() else "video file"
        hint = "" if str(source).isdigit() or os.path.exists(str(source)) else " (no such file)"
        raise VideoError(f"{source}: cannot open this {what}{hint}")
    return capture


def source_fps(capture):
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if fps and fps > 0 else FALLBACK_FPS


def read_frames(capture, every, max_frames=None):
    """Every `every`-th frame (the first included) -> Frame, at most max_frames of them."""
    fps = source_fps(capture)
    index = taken = 0
    while max_frames is None or taken < max_frames:
        ok, bgr = capture.read()
        if not ok:
            return
        if index % every == 0:
            encoded_ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not encoded_ok:
                raise VideoError(f"frame {index}: could not be encoded as JPEG")
            yield Frame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), jpeg.tobytes())
            taken += 1
        index += 1


def task_call(client, task, module=None, top_k=None, threshold=None):
    """The client call for `task` on a list of images: top_k applies to classify, threshold to
    detect."""
    if task == "classify":
        return lambda images: client.classify(images, top_k=top_k, module=module)
    if task == "detect":
        return lambda images: client.detect(images, threshold=threshold, module=module)
    return lambda images: client.recognize(images, module=module)


def predict_batch(call, batch):
    """One request for a batch of frames; a refused batch marks each of its frames with the error."""
    try:
        answers = call([frame.jpeg for frame in batch])
    except ClientError as err:
        if is_fatal(err):
            raise ServerUnusable(str(err)) from err
        for frame in batch:
            frame.error = error_text(err)
        return batch
    for frame, answer in zip(batch, answers):
        frame.result = answer
    return batch


def frame_record(frame):
    record = {"frame": frame.index, "time_s": round(frame.time_s, 3)}
    if frame.error is not None:
        return {**record, "error": frame.error}
    return {**record, "result": frame.result}


class AnnotatedVideo:
    """Writes each processed frame with its result drawn; opened at the first frame's size."""

    def __init__(self, path, fps):
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in VIDEO_CODECS:
            raise VideoError(f"{path}: the annotated video must end in {', '.join(VIDEO_CODECS)}")
        self.path = path
        self.fps = fps
        self.codec = VIDEO_CODECS[suffix]
        self.writer = None

    def write(self, frame):
        picture = frame.rgb if frame.result is None else draw_result(frame.rgb, frame.result)
        bgr = cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR)
        if self.writer is None:
            height, width = bgr.shape[:2]
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.codec), self.fps, (width, height))
            if not self.writer.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot write {self.codec} video here")
        self.writer.write(bgr)

    def close(self):
        if self.writer is not None:
            self.writer.release()


def process_video(client, source, task="classify", every=1, batch_size=8, workers=2, module=None, top_k=None,
                  threshold=None, max_frames=None, save_video=None, on_frame=None):
    """Run a video through a served module. on_frame(Frame) is called for every processed frame,
    in order. -> (frames processed, frames failed)."""
    if task not in TASK_MODULES:
        raise VideoError(f"task: {task!r} is not one of {', '.join(TASK_MODULES)}")
    for name, value in (("every", every), ("batch_size", batch_size), ("workers", workers)):
        if not isinstance(value, int) or value < 1:
            raise VideoError(f"{name}: expected a whole number of at least 1, got {value!r}")
    call = task_call(client, task, module, top_k, threshold)
    capture = open_capture(source)
    try:
        annotated = AnnotatedVideo(save_video, source_fps(capture) / every) if save_video else None
    except VideoError:
        capture.release()
        raise
    done = failed = 0
    try:
        batches = batched(read_frames(capture, every, max_frames), batch_size)
        for batch in ordered_bounded_map(lambda b: predict_batch(call, b), batches, workers):
            for frame in batch:
                done += 1
                failed += frame.error is not None
                if annotated is not None:
                    annotated.write(frame)
                if on_frame is not None:
                    on_frame(frame)
    finally:
        capture.release()
        if annotated is not None:
            annotated.close()
    return done, failed
