"""Few-shot learning of compound expressions: the paper's protocol and N-way K-shot episodes.

Runs :func:`cfer.fewshot.run_fewshot` (what ``cfer fewshot`` runs) and prints its summary:

1. Maiden & Nakisa's protocol: each compound class is added alone to the basic-phase model and
   learned from K in {1, 3, 5, all} shots with the continual distillation loss, over several
   seeds; scored both as the reference does (held-out images of the new class only) and honestly
   (balanced accuracy over basic + new classes on held-out subjects).
2. Standard episodic evaluation: 5-way 1-shot and 5-shot on held-out subjects over 600 episodes,
   nearest-prototype and per-episode linear classifiers, on a frozen ImageNet backbone and on the
   backbone trained in the basic phase.

Examples::

    OMP_NUM_THREADS=1 python examples/fewshot_eval.py --out runs/fewshot
    python examples/fewshot_eval.py --basic-run runs/basic --out runs/fewshot_cv
    python examples/fewshot_eval.py --quick --out /tmp/fewshot_quick
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cfer.config import load_config
from cfer.fewshot import FewShotConfig, format_fewshot_summary, run_fewshot

# A smoke-test scale: a couple of minutes on 2 cores instead of the full default run.
QUICK = [
    "basic.data.subjects=60", "basic.head_epochs=10", "basic.finetune_epochs=2", "data.subjects=90",
    "paper.seeds=1", "paper.shots=[1,5]", "paper.classes=[happily_surprised,sadly_angry,awed]",
    "episodic.episodes=100", "episodic.classifiers=[prototype]",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Settings: cfer.fewshot.FewShotConfig; "
                                     "preset configs/fewshot.yaml.")
    parser.add_argument("--out", type=Path, default=Path("runs/fewshot"), help="run directory (default: runs/fewshot)")
    parser.add_argument("--config", type=Path, help="YAML settings (default: configs/fewshot.yaml when present)")
    parser.add_argument("--basic-run", help="reuse this finished basic-phase run (key: basic_run)")
    parser.add_argument("--episodes", type=int, help="episodes per N-way K-shot setting (key: episodic.episodes)")
    parser.add_argument("--seeds", type=int, help="shot selections per class and K (key: paper.seeds)")
    parser.add_argument("--skip-paper", action="store_true", help="only the episodic evaluation")
    parser.add_argument("--skip-episodic", action="store_true", help="only the paper's protocol")
    parser.add_argument("--quick", action="store_true", help="a small smoke-test run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set paper.steps=50; repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("cfer.models.heads", "cfer.models.classifier"):  # one line per added unit otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)

    overrides = list(QUICK) if args.quick else []
    flags = {"basic_run": args.basic_run, "episodic.episodes": args.episodes, "paper.seeds": args.seeds}
    overrides += [f"{key}={value}" for key, value in flags.items() if value is not None]
    overrides += ["paper.enabled=false"] * args.skip_paper + ["episodic.enabled=false"] * args.skip_episodic
    default = Path(__file__).resolve().parents[1] / "configs" / "fewshot.yaml"
    path = args.config if args.config is not None else (default if default.is_file() else None)
    config = load_config(FewShotConfig, path, overrides + args.overrides)
    summary = run_fewshot(config, args.out)
    print(format_fewshot_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
