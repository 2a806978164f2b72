"""How long the weekly retrain's six classifier trainings take on N GPU workers, from one measured
training rate and the schedule params give each component.

The model of the time, per component (every number but the rate comes from params or the flags):
- crops: the week's images times the share that shows the component's item (shirt or jeans);
  the split's train and val fractions from `labels.split`;
- frozen phase (cached features): one forward pass over (1 + `augmented_views`) × train crops and
  over val; the head's own epochs cost nothing beside that;
- fine-tune phase: `fine_tune.epochs` × (a training step over the train crops + a forward pass
  over val), all epochs run (early stopping only ever shortens it);
- speed: `--rate` training images/s measured at `--rate-size` px, scaled by pixel count to each
  component's `image_size` (a DenseNet121's work grows with the pixels), a forward pass costing a
  third of a training step.
Components are spread over the workers longest first; a worker with several GPUs splits each
batch over them (MirroredStrategy) at `--multi-gpu-efficiency`.

Usage: python experiments/gpu/weekly_scale.py [--images 250000] [--rate 4000 --rate-size 64]
       [--profile paper] [--workers 1 2 3 6] [--gpus-per-worker 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipelines.config import ComponentParams, Params, load_params

FORWARD_SHARE = 1 / 3  # a forward pass against a forward + backward training step


def component_seconds(component: ComponentParams, crops: float, params: Params, rate: float, rate_size: int) -> float:
    training = component.training
    split = params.labels.split
    train, val = crops * split.train, crops * split.val
    step_rate = rate * (rate_size / training.image_size) ** 2
    forward_rate = step_rate / FORWARD_SHARE
    frozen = ((1 + training.frozen.augmented_views) * train + val) / forward_rate if training.frozen.epochs else 0.0
    fine_tune = training.fine_tune.epochs * (train / step_rate + val / forward_rate)
    return frozen + fine_tune


def wall_seconds(durations: list[float], workers: int, gpus: int, efficiency: float) -> float:
    """Longest-first onto the least-loaded worker; a worker's GPUs share each component."""
    speedup = 1 + (gpus - 1) * efficiency
    loads = [0.0] * workers
    for seconds in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += seconds / speedup
    return max(loads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--images", type=int, default=250_000, help="images the week's training sees")
    parser.add_argument("--shirt-share", type=float, default=0.5, help="share of images showing a shirt (rest jeans)")
    parser.add_argument("--rate", type=float, default=4000.0, help="measured training images/s on one GPU")
    parser.add_argument("--rate-size", type=int, default=64, help="the crop side that rate was measured at")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--gpus-per-worker", type=int, default=1)
    parser.add_argument("--multi-gpu-efficiency", type=float, default=0.9)
    args = parser.parse_args()
    params = load_params(args.params, args.profile)
    durations = []
    print(f"{args.images:,} images, profile {args.profile}, {args.rate:.0f} images/s at {args.rate_size} px")
    for name in params.components:
        component = params.component(name)
        share = args.shirt_share if component.item == "shirt" else 1 - args.shirt_share
        seconds = component_seconds(component, args.images * share, params, args.rate, args.rate_size)
        durations.append(seconds)
        t = component.training
        print(
            f"  {name:<14} {t.image_size} px, frozen {t.frozen.epochs} + fine-tune {t.fine_tune.epochs} epochs: "
            f"{seconds / 3600:.2f} GPU-hours"
        )
    print(f"  all six: {sum(durations) / 3600:.2f} GPU-hours")
    for workers in args.workers:
        hours = wall_seconds(durations, workers, args.gpus_per_worker, args.multi_gpu_efficiency) / 3600
        print(f"  {workers} worker(s) × {args.gpus_per_worker} GPU: {hours:.2f} h wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
