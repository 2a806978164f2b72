"""How large an input does a from-scratch DenseNet121 need, and how tight a crop? A study for a
machine with a GPU and PyTorch: the demo profile's recipe re-implemented in torchvision (Adam
1e-3, batch 32, cross-entropy with balanced class weights, flips, up to 40 epochs, early
stopping on validation loss watched from epoch 20 with patience 8, best weights kept), run many
times side by side on the pipeline's own crops and weak labels, to choose what the 2-core CPU
then confirms with `python -m pipelines.stages.train`. It is not run by `make bench`.

Two steps:

  pack (here, in the Seamline environment: needs OpenCV): re-cut one component's crops from the
  crawled photos and the crop stage's detection boxes (data/crops/<component>/index.csv) at a margin and
  size of your choice, into one .npz with labels and splits (with --shop, a crawled demo shop, also
  each crop's true class and its photo's view, so the runs are scored on the truth as well):
      python experiments/gpu/input_size.py pack shirt-pattern --margin -0.25 --size 128 --out .gx/shirt-pattern.npz
      python experiments/gpu/input_size.py pack jeans-color --margin 0.15 --size 64 --out .gx/jeans-color.npz \\
          --shop data/demo_shop

  train (device machine): train the named variants, each a view of a packed array (the centre
  share `keep` of the side, resized to `size`; `from` first resizes to that size, to mimic
  upsampling a smaller crop), every seed in its own process on the one GPU. Recipe changes a
  variant may add: `ema=DECAY` (validate, keep and test a moving average of the weights and
  BatchNorm statistics), `smooth=F` (label smoothing), `wd=F` (AdamW weight decay):
      python experiments/gpu/input_size.py train shirt-pattern:size=64 shirt-pattern:size=96,from=64 \\
          shirt-pattern:size=128 jeans-color:size=64 jeans-color:size=64,ema=0.99 --data .gx --seeds 0 1 2 3
  Prints one JSON line per run (test accuracy and macro-F1, epochs, the kept epoch; with a
  truth-packed array also accuracy on the truth, on its front views, and with flip test-time
  augmentation) and a mean/min/max summary per variant. The test splits hold 68–151 crops:
  single runs differ by 0.05–0.10, so compare means over seeds.

Needs torch, torchvision and numpy on the device; the Seamline install does not provide torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the device has the tree, not the install
from pipelines.evaluate import classification_report

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1) * 255


# --- pack (CPU, Seamline environment) --------------------------------------------------------


def pack(
    component: str,
    margin: float,
    size: int,
    crops: Path,
    labels: Path,
    images: Path,
    out: Path,
    shop: Path | None = None,
    manifests: Path | None = None,
) -> int:
    """Crops of `component` re-cut from the photos at `margin` and `size`; returns their count.
    With the demo `shop` (and the crawl's `manifests`) each crop also gets its true class (-1
    where the truth has none) and its photo's view, so runs can be scored on the truth too."""
    import cv2

    from pipelines.crop import crop_square

    boxes = {}
    with (crops / component / "index.csv").open(newline="") as handle:  # the component's crop index
        for row in csv.DictReader(handle):
            if row["component"] == component and row["status"] == "cropped":
                boxes[row["sha256"]] = tuple(float(v) for v in row["box"].split())
    photos = {path.stem: path for path in images.rglob("*") if path.stem in boxes}
    with (labels / f"{component}.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["sha256"] in boxes and row["sha256"] in photos]
    classes = sorted({row["label"] for row in rows})
    pixels = []
    for row in rows:
        image = cv2.cvtColor(cv2.imread(str(photos[row["sha256"]])), cv2.COLOR_BGR2RGB)
        pixels.append(crop_square(image, boxes[row["sha256"]], size, margin))
    extra = {}
    if shop is not None:
        from crawlers.demo_shop.truth import ATTRIBUTE, image_labels

        image_truth = image_labels(shop, manifests or images)
        truths = [image_truth.get(r["sha256"], {}) for r in rows]
        extra = {
            "truth": np.array(
                [
                    classes.index(t[ATTRIBUTE[component]]) if t.get(ATTRIBUTE[component]) in classes else -1
                    for t in truths
                ]
            ),
            "view": np.array([t.get("view", "unknown") for t in truths]),
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x=np.stack(pixels),
        y=np.array([classes.index(r["label"]) for r in rows]),
        split=np.array([r["split"] for r in rows]),
        classes=np.array(classes),
        **extra,
    )
    return len(rows)


# --- train (device: torch) ---------------------------------------------------------------------


def parse_variant(spec: str) -> tuple[str, dict[str, float]]:
    """`component:size=96,keep=0.6,from=64,ema=0.99` → (component, settings); size is required."""
    component, _, rest = spec.partition(":")
    settings = {key: float(value) for key, value in (item.split("=") for item in rest.split(",") if item)}
    if "size" not in settings or set(settings) - {"size", "keep", "from", "epochs", "ema", "smooth", "wd"}:
        raise SystemExit(
            f"{spec}: expected component:size=N[,keep=F][,from=N][,epochs=N][,ema=DECAY][,smooth=F][,wd=F]"
        )
    return component, settings


def view(x, keep: float, size: int):
    """The centre `keep` of the side, resized to `size` (area averaging down, bilinear up)."""
    import torch.nn.functional as F

    side = x.shape[-1]
    kept = int(round(side * keep))
    offset = (side - kept) // 2
    x = x[..., offset : offset + kept, offset : offset + kept]
    if kept == size:
        return x
    if kept > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def train_one(data: Path, spec: str, seed: int) -> dict[str, object]:
    """One from-scratch DenseNet121 on one variant, the demo profile's recipe."""
    import torch
    import torch.nn.functional as F
    import torchvision

    component, settings = parse_variant(spec)
    size, keep, epochs = int(settings["size"]), settings.get("keep", 1.0), int(settings.get("epochs", 40))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    packed = np.load(data / f"{component}.npz")
    x = torch.from_numpy(packed["x"]).permute(0, 3, 1, 2).float()
    if "from" in settings:
        x = view(x, keep, int(settings["from"]))
        keep = 1.0
    x = (view(x, keep, size) - torch.from_numpy(MEAN)) / torch.from_numpy(STD)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(packed["y"]).long().to(device)
    split = packed["split"]
    index = {name: torch.from_numpy(np.flatnonzero(split == name)).to(device) for name in ("train", "val", "test")}
    classes = len(packed["classes"])
    counts = torch.bincount(y[index["train"]], minlength=classes).float()
    weights = counts.sum() / (classes * counts.clamp(min=1))
    model = (
        torchvision.models.densenet121(weights=None, num_classes=classes)
        .to(device)
        .to(memory_format=torch.channels_last)
    )
    # wd=F: decoupled weight decay (AdamW; Keras's AdamW means the same), none in the demo recipe.
    # eps=1e-7: Keras's epsilon
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-7, weight_decay=settings.get("wd", 0.0))
    smoothing = settings.get("smooth", 0.0)  # smooth=F: label smoothing, as Keras's label_smoothing
    autocast = {"device_type": "cuda", "dtype": torch.bfloat16, "enabled": device == "cuda"}

    # ema=DECAY: validate, keep and test an exponential moving average of the weights (and of
    # BatchNorm's statistics), updated every step, instead of the raw weights.
    averaged = None
    if "ema" in settings:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings["ema"]), use_buffers=True)
    judged = averaged.module if averaged is not None else model

    def logits_of(name: str, flip: bool = False):
        judged.eval()
        with torch.no_grad(), torch.autocast(**autocast):
            return torch.cat(
                [
                    judged(x[index[name][i : i + 256]].flip(-1) if flip else x[index[name][i : i + 256]]).float()
                    for i in range(0, len(index[name]), 256)
                ]
            )

    def evaluate(name: str, logits=None) -> tuple[float, float, float]:
        logits = logits_of(name) if logits is None else logits
        truth = y[index[name]]
        report = classification_report(
            truth.cpu().numpy(), logits.argmax(1).cpu().numpy(), [str(c) for c in packed["classes"]]
        )
        return F.cross_entropy(logits, truth).item(), report["accuracy"], report["macro_f1"]

    watch_from = min(20, epochs - 1)  # the demo's early_stopping_start
    best, best_state, kept, waited, history, started = math.inf, None, 0, 0, [], time.time()
    for epoch in range(epochs):
        model.train()
        order = index["train"][torch.randperm(len(index["train"]), device=device)]
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            images = x[batch]
            flip = torch.rand(len(batch), device=device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            with torch.autocast(**autocast):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), y[batch], weight=weights, label_smoothing=smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if averaged is not None:
                averaged.update_parameters(model)
        val_loss, val_acc, _ = evaluate("val")
        history.append((epoch + 1, round(val_loss, 3), round(val_acc, 3)))
        if epoch >= watch_from:
            if val_loss < best:
                best, kept, waited = val_loss, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
            else:
                waited += 1
                if waited >= 8:
                    break
    judged.load_state_dict(best_state)
    plain = logits_of("test")
    _, test_acc, test_f1 = evaluate("test", plain)
    result = {
        "variant": spec,
        "seed": seed,
        "test_acc": round(test_acc, 3),
        "test_f1": round(test_f1, 3),
        "epochs": len(history),
        "kept": kept,
        "best_val_loss": round(best, 3),
        "test_crops": len(index["test"]),
        "seconds": round(time.time() - started, 1),
        "history": history,
    }
    if "truth" in packed:  # packed with --shop: the test split scored on the shop's truth as well
        flipped = logits_of("test", flip=True)
        truth = torch.from_numpy(packed["truth"]).to(device)[index["test"]]
        front = torch.from_numpy(packed["view"][split == "test"] == "front").to(device)
        right = plain.argmax(1) == truth
        # Flip test-time augmentation: the mean of the crop's and its mirror's probabilities.
        right_tta = (plain.softmax(1) + flipped.softmax(1)).argmax(1) == truth
        result.update(
            truth_acc=round(right.float().mean().item(), 3),
            truth_front_acc=round(right[front].float().mean().item(), 3),
            truth_tta_acc=round(right_tta.float().mean().item(), 3),
            test_front_crops=int(front.sum().item()),
        )
    return result


def summarise(results: list[dict[str, object]]) -> None:
    by_variant: dict[str, list[dict[str, object]]] = {}
    for row in results:
        by_variant.setdefault(str(row["variant"]), []).append(row)
    truth = all("truth_acc" in r for r in results)
    print(
        f"{'variant':<44} {'runs':>4} {'test acc mean [min–max]':>26} {'macro-F1 mean':>14}"
        + (f" {'truth mean [min–max]':>23} {'front':>6} {'flip TTA':>9}" if truth else "")
    )
    for variant, rows in by_variant.items():
        acc = [float(r["test_acc"]) for r in rows]
        f1 = [float(r["test_f1"]) for r in rows]
        spread = f"[{min(acc):.3f}–{max(acc):.3f}]"
        line = f"{variant:<44} {len(rows):>4} {statistics.mean(acc):>12.3f} {spread} {statistics.mean(f1):>14.3f}"
        if truth:
            on_truth = [float(r["truth_acc"]) for r in rows]
            line += (
                f" {statistics.mean(on_truth):>9.3f} [{min(on_truth):.3f}–{max(on_truth):.3f}]"
                f" {statistics.mean(float(r['truth_front_acc']) for r in rows):>6.3f}"
                f" {statistics.mean(float(r['truth_tta_acc']) for r in rows):>9.3f}"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="re-cut one component's crops into an .npz (here)")
    packing.add_argument("component")
    packing.add_argument(
        "--margin", type=float, required=True, help="crop margin, as crop.margin (-0.25: the middle half)"
    )
    packing.add_argument("--size", type=int, required=True, help="side of the packed crops, px")
    packing.add_argument("--crops", type=Path, default=Path("data/crops"))
    packing.add_argument("--labels", type=Path, default=Path("data/labels"))
    packing.add_argument("--images", type=Path, default=Path("data/raw"))
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument(
        "--shop",
        type=Path,
        default=None,
        help="the demo shop crawled (its ground_truth.jsonl): also pack each crop's true class and view",
    )
    packing.add_argument("--manifests", type=Path, default=None, help="the crawl's manifests (default: --images)")
    training = commands.add_parser("train", help="train variants on a GPU (device machine)")
    training.add_argument("variants", nargs="+", help="component:size=N[,keep=F][,from=N][,epochs=N]")
    training.add_argument("--data", type=Path, default=Path(".gx"), help="folder of <component>.npz from pack")
    training.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    training.add_argument("--jsonl", type=Path, default=None, help="append each run's result (with its history) here")
    training.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a worker: one variant, one seed
    args = parser.parse_args()

    if args.command == "pack":
        count = pack(
            args.component,
            args.margin,
            args.size,
            args.crops,
            args.labels,
            args.images,
            args.out,
            args.shop,
            args.manifests,
        )
        print(f"{args.out}: {count} crops of {args.component} at margin {args.margin:g}, {args.size} px")
        return
    for variant in args.variants:
        component, _ = parse_variant(variant)
        if not (args.data / f"{component}.npz").is_file():
            parser.error(f"{args.data / component}.npz: missing (run pack first)")
    if args.one:
        row = train_one(args.data, args.variants[0], args.seeds[0])
        print(json.dumps(row), flush=True)
        if args.jsonl:  # each run appends as it ends, so a run cut short by a time limit keeps those done
            with args.jsonl.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        return
    # Small batches of a DenseNet leave one process launch-bound; a process per run fills the GPU.
    keep = ["--jsonl", str(args.jsonl)] if args.jsonl else []
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "train",
                variant,
                "--one",
                "--data",
                str(args.data),
                "--seeds",
                str(seed),
                *keep,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for variant in args.variants
        for seed in args.seeds
    ]
    results = []
    for worker in workers:
        output, _ = worker.communicate()
        if worker.returncode != 0:
            print(f"a run failed (exit {worker.returncode}); see its error above", file=sys.stderr)
            continue
        row = json.loads(output.strip().splitlines()[-1])
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    summarise(results)


if __name__ == "__main__":
    main()
