"""Each component trained by a profile at several seeds on one crawl's crops, scored on the demo
shop's truth (as `experiments/truth_scores.py` does), with the mean per component and the minutes
each training took: one run of a classifier decides little, so the demo's figures are means.

Usage: python experiments/demo_seeds.py [SHOP_DIR (default data/demo_shop)] [--seeds 42 1 2]
       [--profile demo] [--components ...] [--out .cache/demo-seeds] [--json PATH]
Run after `make demo` (it reuses that run's crops and labels), from the repository root. The
models go under --out, never over models/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from truth_scores import score  # experiments/ is on the path when this script runs

from crawlers.demo_shop.truth import ATTRIBUTE, image_labels


def params_for_seed(params: Path, profile: str, seed: int, out: Path) -> Path:
    """A copy of the params file whose profile trains with `seed`."""
    tree = yaml.safe_load(params.read_text(encoding="utf-8"))
    training = tree["profiles"][profile].setdefault("training", {})
    training["seed"] = seed
    tree["profile"] = profile
    path = out / f"params-seed-{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def train(component: str, params: Path, run_dir: Path, crops: Path, labels: Path) -> float:
    """The train stage, as DVC runs it, into `run_dir`; returns its wall-clock minutes."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.stages.train",
            "--component",
            component,
            "--params",
            str(params),
            "--crops",
            str(crops),
            "--labels",
            str(labels),
            "--out",
            str(run_dir / "models" / component),
            "--metrics",
            str(run_dir / "metrics" / f"{component}.json"),
            "--plots",
            str(run_dir / "plots" / component),
        ],
        check=True,
    )
    return (time.perf_counter() - started) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop", type=Path, nargs="?", default=Path("data/demo_shop"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--components", nargs="+", default=list(ATTRIBUTE), choices=list(ATTRIBUTE))
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path(".cache/demo-seeds"))
    parser.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    args = parser.parse_args()
    if not (args.shop / "ground_truth.jsonl").is_file():
        parser.error(f"{args.shop}: not a built demo shop (no ground_truth.jsonl)")
    image_truth = image_labels(args.shop, args.manifests)
    runs: list[dict[str, object]] = []
    for seed in args.seeds:
        params = params_for_seed(args.params, args.profile, seed, args.out)
        for component in args.components:
            run_dir = args.out / f"seed-{seed}"
            minutes = train(component, params, run_dir, args.crops, args.labels)
            row = score(run_dir / "models" / component, args.crops, args.labels, image_truth, component)
            runs.append({"seed": seed, "minutes": round(minutes, 2), **row})
            truth = row["truth"]
            print(f"seed {seed} {component}: truth {truth[0]:.3f} / {truth[1]:.3f} in {minutes:.1f} min", flush=True)
    print(f"\n{'component':<14} {'truth accuracy by seed':<30} {'mean':>6} {'mean F1':>8} {'minutes':>8}")
    for component in args.components:
        mine = [r for r in runs if r["component"] == component]
        accuracies = [r["truth"][0] for r in mine]
        f1s = [r["truth"][1] for r in mine]
        print(
            f"{component:<14} {' / '.join(f'{a:.3f}' for a in accuracies):<30} "
            f"{sum(accuracies) / len(mine):>6.3f} {sum(f1s) / len(mine):>8.3f} "
            f"{sum(float(r['minutes']) for r in mine) / len(mine):>8.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
