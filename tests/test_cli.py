"""`clas-client` against real served modules: folders, globs, progress, CSV, pictures, the
gallery commands, and exit codes a script can rely on."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from fixtures_detector import export_fixture_detector
from PIL import Image

from clas_system.client import cli as client_cli
from clas_system.client.cli import EXIT_OK, EXIT_SERVER, EXIT_SOME_FAILED, EXIT_USAGE
from harness.payloads import REPO, SHARED_IMAGES, image_bytes

SMALL_IMAGES = sorted(str(p.relative_to(SHARED_IMAGES)) for folder in ("textline", "orientation", "imagenet")
                      for p in (SHARED_IMAGES / folder).iterdir())


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    """clas_system, det_system (the generated fixture detector) and rec_system (empty gallery)
    in one `hub serving start`."""
    detector_dir = tmp_path_factory.mktemp("cli_detector")
    export_fixture_detector(detector_dir)
    return server_factory(modules={"clas_system": {}, "det_system": {"model_dir": str(detector_dir)},
                                   "rec_system": {"index_dir": str(tmp_path_factory.mktemp("cli_rec") / "gallery")}})


@pytest.fixture(scope="module")
def clas_server(server):
    return server


@pytest.fixture(scope="module")
def rec_server(server):
    return server


def copy_images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        relative = SMALL_IMAGES[number % len(SMALL_IMAGES)]
        path = folder / f"{number:03d}_{os.path.basename(relative)}"
        shutil.copyfile(SHARED_IMAGES / relative, path)
        paths.append(path)
    return paths


def run_cli(*args, capsys):
    code = client_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_folder_of_200_images_shows_progress_and_exits_0(clas_server, tmp_path):
    folder = tmp_path / "photos"
    copy_images(folder / "a", 120)
    copy_images(folder / "b", 80)
    done = subprocess.run([sys.executable, "-m", "clas_system.client.cli", "classify", str(folder),
                           "--url", clas_server.url, "--top-k", "2", "--workers", "2", "--batch-size", "16"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    records = json_lines(done.stdout)
    assert len(records) == 200
    assert records[0]["file"] == str(folder / "a" / "000_ILSVRC2012_val_00000010.jpeg")  # sorted, in order
    assert all(len(r["scores"]) == 2 and set(r["label_names"]) == {"0", "180"} for r in records)
    assert "200/200" in done.stderr and "img" in done.stderr  # tqdm's progress line


def test_textline_images_get_their_orientation(clas_server, capsys):
    code, out, _ = run_cli("classify", str(SHARED_IMAGES / "textline" / "*.png"), "--url", clas_server.url,
                           "--quiet", capsys=capsys)
    assert code == EXIT_OK
    by_name = {os.path.basename(r["file"]): r["label_names"][0] for r in json_lines(out)}
    assert by_name == {"textline_orientation_test_0_0.png": "0", "textline_orientation_test_1_0.png": "180"}


def test_one_corrupt_image_fails_alone_and_is_named(clas_server, tmp_path, capsys):
    folder = tmp_path / "mixed"
    good = copy_images(folder, 6)
    corrupt = folder / "003_broken.jpg"
    corrupt.write_bytes(image_bytes("imagenet/ILSVRC2012_val_00000010.jpeg")[:3000])
    output = tmp_path / "out.jsonl"
    code, _, err = run_cli("classify", folder, "--url", clas_server.url, "-o", output, capsys=capsys)
    assert code == EXIT_SOME_FAILED
    assert f"{corrupt}: images[0]: truncated JPEG" in err and "1 input(s) failed" in err
    records = json_lines(output.read_text())
    assert len(records) == 7
    failed = [r for r in records if "error" in r]
    assert [r["file"] for r in failed] == [str(corrupt)]
    assert sorted(r["file"] for r in records if "scores" in r) == sorted(map(str, good))


def test_csv_output_and_result_pictures(clas_server, tmp_path, capsys):
    folder = tmp_path / "two"
    copy_images(folder, 2)
    vis = tmp_path / "vis"
    code, out, _ = run_cli("classify", folder, "--url", clas_server.url, "--top-k", "2", "--format", "csv",
                           "--save-vis", vis, "-q", capsys=capsys)
    assert code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "1", "2"]
    assert {r["label"] for r in rows} == {"0", "180"} and all(0 <= float(r["score"]) <= 1 for r in rows)
    pictures = sorted(p.name for p in vis.iterdir())
    assert pictures == sorted(p.name for p in folder.iterdir())
    with Image.open(vis / pictures[0]) as drawn, Image.open(folder / pictures[0]) as original:
        assert drawn.size == original.size


def test_exit_codes_for_bad_input_and_no_server(tmp_path, capsys):
    code, _, err = run_cli("classify", tmp_path / "missing", capsys=capsys)
    assert code == EXIT_USAGE and "missing: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("classify", tmp_path / "empty", capsys=capsys)
    assert code == EXIT_USAGE and "no image files" in err
    code, _, err = run_cli("classify", SHARED_IMAGES / "textline", "--url", "http://127.0.0.1:9", "-q", capsys=capsys)
    assert code == EXIT_SERVER and "http://127.0.0.1:9 cannot be used" in err
    with pytest.raises(SystemExit) as usage:
        client_cli.main(["classify", str(SHARED_IMAGES), "--workers", "0"])
    assert usage.value.code == EXIT_USAGE and "must be at least 1" in capsys.readouterr().err


def test_the_first_releases_command_line_still_classifies(clas_server, capsys):
    code, out, _ = run_cli(SHARED_IMAGES / "textline", "--url", clas_server.url, "-q", capsys=capsys)
    assert code == EXIT_OK and len(json_lines(out)) == 2


def test_gallery_commands(rec_server, tmp_path, capsys):
    url = ("--url", rec_server.url, "-q")
    drinks = SHARED_IMAGES / "drink"
    gallery_list = tmp_path / "gallery_list.txt"
    gallery_list.write_text("".join(f"drink/{p.name}\t{p.stem} 饮料\n" for p in sorted(drinks.iterdir())))
    code, out, _ = run_cli("gallery", "import", gallery_list, "--image-root", SHARED_IMAGES, *url, capsys=capsys)
    assert code == EXIT_OK
    imported = json_lines(out)
    assert [r["label"] for r in imported] == ["mosilian 饮料", "nongfu_spring 饮料", "youjia 饮料"]

    anmuxi = SHARED_IMAGES / "product" / "gallery" / "anmuxi"
    code, out, _ = run_cli("gallery", "add", anmuxi, *url, capsys=capsys)  # label: the folder's name
    assert code == EXIT_OK and {r["label"] for r in json_lines(out)} == {"anmuxi"} and len(json_lines(out)) == 6

    code, out, _ = run_cli("gallery", "stats", *url[:2], capsys=capsys)
    assert json.loads(out)["stats"]["count"] == 9

    code, out, _ = run_cli("gallery", "search", drinks / "youjia.jpeg", "--k", "2", *url, capsys=capsys)
    hits = json_lines(out)[0]["hits"]
    assert hits[0]["label"] == "youjia 饮料" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)

    vis = tmp_path / "vis"
    code, out, _ = run_cli("recognize", drinks / "youjia.jpeg", "--save-vis", vis, *url, capsys=capsys)
    assert code == EXIT_OK and json_lines(out)[0]["regions"][0]["rec_docs"] == "youjia 饮料"
    assert (vis / "youjia.jpeg").is_file()
    code, out, _ = run_cli("recognize", drinks / "youjia.jpeg", "--score-thres", "1.5", "--return-k", "1", *url,
                           capsys=capsys)  # no score reaches 1.5: nothing recognised
    assert code == EXIT_OK and json_lines(out)[0]["regions"] == []

    code, out, _ = run_cli("gallery", "remove", "--labels", "anmuxi", *url[:2], capsys=capsys)
    assert code == EXIT_OK and json.loads(out)["removed"] == 6
    code, out, _ = run_cli("gallery", "remove", "--ids", str(imported[0]["id"]), *url[:2], capsys=capsys)
    assert json.loads(out)["removed"] == 1
    code, out, _ = run_cli("gallery", "save", *url[:2], capsys=capsys)
    assert code == EXIT_OK and json.loads(out)["stats"]["count"] == 2


def test_a_bad_gallery_list_names_its_line(tmp_path, capsys):
    bad = tmp_path / "list.txt"
    bad.write_text("drink/youjia.jpeg youjia\n")
    code, _, err = run_cli("gallery", "import", bad, "--image-root", SHARED_IMAGES, capsys=capsys)
    assert code == EXIT_USAGE and "line 1" in err


def test_recognize_and_draw_example(rec_server, tmp_path):
    done = subprocess.run([sys.executable, "client_examples/recognize_and_draw.py", str(SHARED_IMAGES / "drink"),
                           "--url", rec_server.url, "--out", str(tmp_path / "drawn")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stdout)
    assert [os.path.basename(r["picture"]) for r in records] == ["mosilian.jpeg", "nongfu_spring.jpeg", "youjia.jpeg"]
    assert all(os.path.isfile(r["picture"]) for r in records)


def test_detect_csv_rows_per_box_and_pictures(server, tmp_path, capsys):
    vis = tmp_path / "boxes"
    code, out, _ = run_cli("detect", SHARED_IMAGES / "misc" / "coco_000000570688.jpg", "--threshold", "0.5",
                           "--format", "csv", "--save-vis", vis, "--url", server.url, "-q", capsys=capsys)
    assert code == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    # The fixture detector's boxes scoring >= 0.5, in a 640x480 image (320x320 input): x * 2, y * 1.5.
    assert [r["label"] for r in rows] == ["foreground", "foreground", "logo"]
    assert [float(r["score"]) for r in rows] == pytest.approx([0.95, 0.8, 0.6])
    assert [float(rows[0][c]) for c in ("x1", "y1", "x2", "y2")] == pytest.approx([64, 72, 576, 408])
    assert (vis / "coco_000000570688.jpg").is_file()
