"""Video through a real served clas_system: a short clip the test writes from the shared
text-line images (upright for 10 frames, then upside down), every 3rd frame, batches, an
annotated video back."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from clas_system import Client
from clas_system.client import cli as client_cli
from clas_system.client.cli import EXIT_OK, EXIT_USAGE
from clas_system.client.video import VideoError, frame_record, process_video
from harness.payloads import REPO, image_path

FRAME_SIZE = (352, 96)  # width, height
UPRIGHT, UPSIDE_DOWN = "textline/textline_orientation_test_0_0.png", "textline/textline_orientation_test_1_0.png"


def on_canvas(relative):
    """The image centred on a white frame of FRAME_SIZE (the clip's frames must share one size)."""
    image = cv2.imread(image_path(relative))
    canvas = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 255, np.uint8)
    top, left = (FRAME_SIZE[1] - image.shape[0]) // 2, (FRAME_SIZE[0] - image.shape[1]) // 2
    canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
    return canvas


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "textlines.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, FRAME_SIZE)
    for relative in [UPRIGHT] * 10 + [UPSIDE_DOWN] * 10:
        writer.write(on_canvas(relative))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clas_server(server_factory):
    return server_factory(modules={"clas_system": {}})


def test_every_third_frame_is_classified_in_order(clas_server, clip):
    frames = []
    done, failed = process_video(Client(clas_server.url), str(clip), task="classify", every=3, batch_size=2,
                                 workers=2, on_frame=frames.append)
    assert (done, failed) == (7, 0)
    assert [f.index for f in frames] == [0, 3, 6, 9, 12, 15, 18]
    assert [f.result["label_names"][0] for f in frames] == ["0"] * 4 + ["180"] * 3
    assert frame_record(frames[1]) == {"frame": 3, "time_s": 0.3, "result": frames[1].result}


def test_cli_writes_frame_lines_and_an_annotated_video(clas_server, clip, tmp_path, capsys):
    annotated = tmp_path / "annotated.mp4"
    lines = tmp_path / "frames.jsonl"
    code = client_cli.main(["video", str(clip), "--url", clas_server.url, "--every", "5", "--max-frames", "3",
                            "--save-video", str(annotated), "-o", str(lines), "--batch-size", "2"])
    assert code == EXIT_OK
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 5, 10]
    assert [r["result"]["label_names"][0] for r in records] == ["0", "0", "180"]
    assert "3frame" in capsys.readouterr().err.replace(" ", "")  # progress

    played = cv2.VideoCapture(str(annotated))
    assert played.get(cv2.CAP_PROP_FPS) == pytest.approx(2.0)  # 10 fps / every 5: plays at the source's speed
    written = []
    while True:
        ok, frame = played.read()
        if not ok:
            break
        written.append(frame)
    played.release()
    assert len(written) == 3 and written[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    # The top-k caption covers the top-left corner of the white canvas.
    assert written[0][:10, :10].mean() < 200 and on_canvas(UPRIGHT)[:10, :10].mean() == 255


def test_an_unopenable_source_is_named(tmp_path, capsys):
    code = client_cli.main(["video", str(tmp_path / "nothing.mp4"), "--url", "http://127.0.0.1:9"])
    assert code == EXIT_USAGE
    assert "nothing.mp4: cannot open this video file (no such file)" in capsys.readouterr().err


def test_video_example(clas_server, clip, tmp_path):
    done = subprocess.run([sys.executable, "client_examples/video_frames.py", str(clip), "--url", clas_server.url,
                           "--every", "10", "--save-video", str(tmp_path / "out.avi")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("frame") for line in lines[:-1]] == [0, 10] and lines[-1] == {"frames": 2, "failed": 0}
    assert (tmp_path / "out.avi").stat().st_size > 0


def test_bad_arguments_are_named(clip, tmp_path):
    client = Client("http://127.0.0.1:9")
    with pytest.raises(VideoError, match=r"out\.gif: the annotated video must end in \.mp4, \.avi, \.mkv"):
        process_video(client, str(clip), save_video=str(tmp_path / "out.gif"))
    with pytest.raises(VideoError, match="every: expected a whole number of at least 1, got 0"):
        process_video(client, str(clip), every=0)
    with pytest.raises(VideoError, match="task: 'segment' is not one of classify, detect, recognize"):
        process_video(client, str(clip), task="segment")
