"""What `clas-client` writes per image: JSON lines (one object per image) or CSV (one row per
top-k entry, region or hit), errors included."""
import csv
import json


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
