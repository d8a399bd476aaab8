"""Few-shot learning of compound expressions: FSCIL sessions, the paper's protocol and N-way K-shot episodes.

Runs :func:`cfer.fewshot.run_fewshot` (what ``cfer fewshot`` runs) and prints its summary. Every
protocol compares the few-shot methods of :data:`cfer.fewshot.FEWSHOT_METHODS` (``paper``,
``paper+memory``, ``imprint``, ``teen``, ``imprint-ft``) on held-out subjects:

1. Few-shot class-incremental learning (FSCIL): after the base session of the basic classes, 15
   sessions of one compound class learned from K=5 shots, over 3 class orders x 3 shot seeds;
   per-session accuracy over every class seen, base and novel accuracy, their harmonic mean and the
   performance drop, beside the full-data continual runs given with ``--reference-run``.
2. Maiden & Nakisa's protocol: each compound class added alone to the basic-phase model from
   K in {1, 3, 5, all} shots, over several seeds; scored both as the reference does (held-out
   images of the new class only) and honestly (balanced accuracy over basic + new classes).
3. Standard episodic evaluation: 5-way 1-shot and 5-shot on held-out subjects over 600 episodes,
   nearest-prototype and per-episode linear classifiers, on a frozen ImageNet backbone and on the
   backbone trained in the basic phase.

Examples::

    python examples/fewshot_eval.py --out runs/fewshot
    python examples/fewshot_eval.py --basic-run runs/incremental/basic --reference-run runs/incremental --out runs/fewshot
    python examples/fewshot_eval.py --protocol fscil --methods imprint,teen --out runs/fewshot_fscil
    python examples/fewshot_eval.py --evaluate-on validation --out runs/fewshot_val   # choose settings honestly
    python examples/fewshot_eval.py --quick --out /tmp/fewshot_quick
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from cfer.config import load_config
from cfer.fewshot import FewShotConfig, format_fewshot_summary, run_fewshot

PROTOCOLS = ("fscil", "paper", "episodic")

# A smoke-test scale: a couple of minutes on 2 cores instead of the full default run.
QUICK = [
    "basic.data.subjects=60", "basic.head_epochs=10", "basic.finetune_epochs=2", "data.subjects=90",
    "paper.seeds=1", "paper.shots=[1,5]", "paper.classes=[happily_surprised,sadly_angry,awed]",
    "fscil.orders=1", "fscil.seeds=2", "episodic.episodes=100", "episodic.classifiers=[prototype]",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Settings: cfer.fewshot.FewShotConfig; "
                                     "preset configs/fewshot.yaml.")
    parser.add_argument("--out", type=Path, default=Path("runs/fewshot"), help="run directory (default: runs/fewshot)")
    parser.add_argument("--config", type=Path, help="YAML settings (default: configs/fewshot.yaml when present)")
    parser.add_argument("--basic-run", help="reuse this finished basic-phase run (key: basic_run)")
    parser.add_argument("--reference-run", action="append", default=[], metavar="DIR",
                        help="a finished `cfer train-incremental` run shown beside FSCIL; repeatable")
    parser.add_argument("--protocol", default="all", help="comma-separated: fscil, paper, episodic, or all")
    parser.add_argument("--methods", help="comma-separated few-shot methods (key: methods)")
    parser.add_argument("--episodes", type=int, help="episodes per N-way K-shot setting (key: episodic.episodes)")
    parser.add_argument("--seeds", type=int, help="shot selections per class and K (key: paper.seeds)")
    parser.add_argument("--evaluate-on", choices=["held-out", "validation"], help="key: evaluate_on")
    parser.add_argument("--quick", action="store_true", help="a small smoke-test run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set fscil.shots=[1,5]; repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("cfer.models.heads", "cfer.models.classifier"):  # one line per added unit otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)

    protocols = PROTOCOLS if args.protocol == "all" else tuple(p.strip() for p in args.protocol.split(","))
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        parser.error(f"unknown protocol(s) {unknown}; known: all, {', '.join(PROTOCOLS)}")
    overrides = list(QUICK) if args.quick else []
    flags = {"basic_run": args.basic_run, "episodic.episodes": args.episodes, "paper.seeds": args.seeds,
             "evaluate_on": args.evaluate_on}
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    overrides += [f"{name}.enabled=false" for name in PROTOCOLS if name not in protocols]
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    if args.reference_run:
        overrides.append(f"fscil.reference_runs=[{', '.join(args.reference_run)}]")
    default = Path(__file__).resolve().parents[1] / "configs" / "fewshot.yaml"
    path = args.config if args.config is not None else (default if default.is_file() else None)
    config = load_config(FewShotConfig, path, overrides + args.overrides)
    start = time.perf_counter()
    summary = run_fewshot(config, args.out)
    print(format_fewshot_summary(summary))
    print(f"example wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
