"""How large an input does a from-scratch DenseNet121 need, and how tight a crop? A study for a
machine with a GPU and PyTorch: the demo profile's recipe re-implemented in torchvision (Adam
1e-3, batch 32, cross-entropy with balanced class weights, flips, up to 40 epochs, early
stopping on validation loss watched from epoch 20 with patience 8, best weights kept), run many
times side by side on the pipeline's own crops and weak labels, to choose what the 2-core CPU
then confirms with `python -m pipelines.train_stage`. It is not run by `make bench`.

Two steps:

  pack (here, in the Seamline environment: needs OpenCV): re-cut one component's crops from the
  crawled photos and the crop stage's detection boxes (data/crops/index.csv) at a margin and
  size of your choice, into one .npz with labels and splits:
      python bench/gpu/input_size.py pack shirt-pattern --margin -0.25 --size 128 --out .gx/shirt-pattern.npz

  train (device machine): train the named variants, each a view of a packed array (the centre
  share `keep` of the side, resized to `size`; `from` first resizes to that size, to mimic
  upsampling a smaller crop), every seed in its own process on the one GPU:
      python bench/gpu/input_size.py train shirt-pattern:size=64 shirt-pattern:size=96,from=64 \\
          shirt-pattern:size=128 jeans-color:size=64 jeans-color:size=64,keep=0.54 --data .gx --seeds 0 1 2 3
  Prints one JSON line per run (test accuracy and macro-F1, epochs, the kept epoch) and a
  mean/min/max summary per variant. The test splits hold 68–151 crops: single runs differ by
  0.05–0.10, so compare means over seeds.

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
from pipelines.evaluate import classification_report  # noqa: E402  (numpy only)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1) * 255


# --- pack (CPU, Seamline environment) --------------------------------------------------------


def pack(component: str, margin: float, size: int, crops: Path, labels: Path, images: Path, out: Path) -> int:
    """Crops of `component` re-cut from the photos at `margin` and `size`; returns their count."""
    import cv2

    from pipelines.crop import crop_square

    boxes = {}
    with (crops / "index.csv").open(newline="") as handle:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=np.stack(pixels), y=np.array([classes.index(r["label"]) for r in rows]),
                        split=np.array([r["split"] for r in rows]), classes=np.array(classes))
    return len(rows)


# --- train (device: torch) ---------------------------------------------------------------------


def parse_variant(spec: str) -> tuple[str, dict[str, float]]:
    """`component:size=96,keep=0.6,from=64` → (component, settings); size is required."""
    component, _, rest = spec.partition(":")
    settings = {key: float(value) for key, value in (item.split("=") for item in rest.split(",") if item)}
    if "size" not in settings or set(settings) - {"size", "keep", "from", "epochs"}:
        raise SystemExit(f"{spec}: expected component:size=N[,keep=F][,from=N][,epochs=N]")
    return component, settings


def view(x, keep: float, size: int):
    """The centre `keep` of the side, resized to `size` (area averaging down, bilinear up)."""
    import torch.nn.functional as F

    side = x.shape[-1]
    kept = int(round(side * keep))
    offset = (side - kept) // 2
    x = x[..., offset:offset + kept, offset:offset + kept]
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
    model = torchvision.models.densenet121(weights=None, num_classes=classes).to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon
    autocast = dict(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def evaluate(name: str) -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad(), torch.autocast(**autocast):
            logits = torch.cat([model(x[index[name][i:i + 256]]).float() for i in range(0, len(index[name]), 256)])
        truth = y[index[name]]
        report = classification_report(truth.cpu().numpy(), logits.argmax(1).cpu().numpy(), [str(c) for c in packed["classes"]])
        return F.cross_entropy(logits, truth).item(), report["accuracy"], report["macro_f1"]

    watch_from = min(20, epochs - 1)  # the demo's early_stopping_start
    best, best_state, kept, waited, history, started = math.inf, None, 0, 0, [], time.time()
    for epoch in range(epochs):
        model.train()
        order = index["train"][torch.randperm(len(index["train"]), device=device)]
        for i in range(0, len(order), 32):
            batch = order[i:i + 32]
            images = x[batch]
            flip = torch.rand(len(batch), device=device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            with torch.autocast(**autocast):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), y[batch], weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        val_loss, val_acc, _ = evaluate("val")
        history.append((epoch + 1, round(val_loss, 3), round(val_acc, 3)))
        if epoch >= watch_from:
            if val_loss < best:
                best, kept, waited = val_loss, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= 8:
                    break
    model.load_state_dict(best_state)
    _, test_acc, test_f1 = evaluate("test")
    return {"variant": spec, "seed": seed, "test_acc": round(test_acc, 3), "test_f1": round(test_f1, 3), "epochs": len(history),
            "kept": kept, "best_val_loss": round(best, 3), "test_crops": len(index["test"]), "seconds": round(time.time() - started, 1),
            "history": history}


def summarise(results: list[dict[str, object]]) -> None:
    by_variant: dict[str, list[dict[str, object]]] = {}
    for row in results:
        by_variant.setdefault(str(row["variant"]), []).append(row)
    print(f"{'variant':<44} {'runs':>4} {'test acc mean [min–max]':>26} {'macro-F1 mean':>14}")
    for variant, rows in by_variant.items():
        acc = [float(r["test_acc"]) for r in rows]
        f1 = [float(r["test_f1"]) for r in rows]
        print(f"{variant:<44} {len(rows):>4} {statistics.mean(acc):>12.3f} [{min(acc):.3f}–{max(acc):.3f}] {statistics.mean(f1):>14.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="re-cut one component's crops into an .npz (here)")
    packing.add_argument("component")
    packing.add_argument("--margin", type=float, required=True, help="crop margin, as crop.margin (-0.25: the middle half)")
    packing.add_argument("--size", type=int, required=True, help="side of the packed crops, px")
    packing.add_argument("--crops", type=Path, default=Path("data/crops"))
    packing.add_argument("--labels", type=Path, default=Path("data/labels"))
    packing.add_argument("--images", type=Path, default=Path("data/raw"))
    packing.add_argument("--out", type=Path, required=True)
    training = commands.add_parser("train", help="train variants on a GPU (device machine)")
    training.add_argument("variants", nargs="+", help="component:size=N[,keep=F][,from=N][,epochs=N]")
    training.add_argument("--data", type=Path, default=Path(".gx"), help="folder of <component>.npz from pack")
    training.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    training.add_argument("--jsonl", type=Path, default=None, help="append each run's result (with its history) here")
    training.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a worker: one variant, one seed
    args = parser.parse_args()

    if args.command == "pack":
        count = pack(args.component, args.margin, args.size, args.crops, args.labels, args.images, args.out)
        print(f"{args.out}: {count} crops of {args.component} at margin {args.margin:g}, {args.size} px")
        return
    for variant in args.variants:
        component, _ = parse_variant(variant)
        if not (args.data / f"{component}.npz").is_file():
            parser.error(f"{args.data / component}.npz: missing (run pack first)")
    if args.one:
        print(json.dumps(train_one(args.data, args.variants[0], args.seeds[0])), flush=True)
        return
    # Small batches of a DenseNet leave one process launch-bound; a process per run fills the GPU.
    workers = [subprocess.Popen([sys.executable, __file__, "train", variant, "--one", "--data", str(args.data), "--seeds", str(seed)],
                                stdout=subprocess.PIPE, text=True) for variant in args.variants for seed in args.seeds]
    results = []
    for worker in workers:
        output, _ = worker.communicate()
        if worker.returncode != 0:
            print(f"a run failed (exit {worker.returncode}); see its error above", file=sys.stderr)
            continue
        row = json.loads(output.strip().splitlines()[-1])
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
        if args.jsonl:
            with args.jsonl.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    summarise(results)


if __name__ == "__main__":
    main()
