"""Which SimCLR views make a useful base? A study for a machine with a GPU and PyTorch (the
project's own pretraining is Keras; this is a faster re-implementation of the same recipe to
explore settings the 2-core CPU cannot afford). It is not run by `make bench`.

On the pipeline's own crops (`data/crops`, `data/labels`: run `make demo` first), it pretrains a
from-scratch DenseNet121 (torchvision) on the unlabelled train/val crops with each view recipe
below and, at several epochs, scores the frozen base by a linear probe per component (a softmax
layer on standardised pooled features, fitted on train+val, scored on test), next to a random
base. The per-component test sets are small (50-150 crops), so differences under ~0.05 are noise.

Usage (device machine): python experiments/gpu/simclr_views.py [--crops data/crops] [--labels data/labels]
       [--epochs 40] [--budget-s 300] [--json PATH]
Needs torch, torchvision, pillow and numpy; the Seamline install does not provide torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models import densenet121

# name -> (smallest kept share of the side, colour jitter, hue jitter, grey share)
RECIPES = {
    "mild (old default)": (0.6, 0.15, 0.0, 0.0),
    "strong (new default)": (0.3, 0.3, 0.1, 0.2),
    "strong, no grey": (0.3, 0.3, 0.1, 0.0),
}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(crops: Path, labels: Path) -> tuple[torch.Tensor, list[dict[str, str]]]:
    """Every cropped (component, image) with its label and split, as one 0-1 tensor."""
    label_of: dict[tuple[str, str], str] = {}
    for path in labels.glob("*.csv"):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                label_of[(path.stem, row["sha256"])] = row["label"]
    rows, pixels = [], []
    for index in sorted(crops.glob("*/index.csv")):  # one crop index per component folder
        with index.open(newline="") as handle:
            for row in csv.DictReader(handle):
                label = label_of.get((row["component"], row["sha256"]))
                if row["file"] and label is not None:
                    rows.append({**row, "label": label})
                    pixels.append(np.asarray(Image.open(crops / row["file"]).convert("RGB")))
    images = torch.tensor(np.stack(pixels)).permute(0, 3, 1, 2).float().div(255)
    return images, rows


def unlabelled(rows: list[dict[str, str]]) -> list[int]:
    """One crop per image and region, test split excluded (as the pretrain stage does)."""
    seen, keep = set(), []
    for i, row in enumerate(rows):
        key = (row["sha256"], "jeans" if row["component"].startswith("jeans") else row["component"])
        if row["split"] != "test" and key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def pooled(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return torch.cat(
            [
                F.adaptive_avg_pool2d(F.relu(encoder((images[i : i + 512] - MEAN) / STD)), 1).flatten(1)
                for i in range(0, len(images), 512)
            ]
        )


def probe(encoder: nn.Module, images: torch.Tensor, rows: list[dict[str, str]]) -> dict[str, float]:
    features = pooled(encoder, images)
    scores = {}
    for component in sorted({r["component"] for r in rows}):
        classes = sorted({r["label"] for r in rows if r["component"] == component})
        train = [i for i, r in enumerate(rows) if r["component"] == component and r["split"] != "test"]
        test = [i for i, r in enumerate(rows) if r["component"] == component and r["split"] == "test"]
        y_train = torch.tensor([classes.index(rows[i]["label"]) for i in train], device=features.device)
        y_test = torch.tensor([classes.index(rows[i]["label"]) for i in test], device=features.device)
        f_train, f_test = features[train], features[test]
        mean, std = f_train.mean(0), f_train.std(0) + 1e-6
        f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
        layer = nn.Linear(f_train.shape[1], len(classes)).to(features.device)
        optimizer = torch.optim.Adam(layer.parameters(), 1e-3, weight_decay=1e-2)
        for _ in range(500):
            optimizer.zero_grad()
            F.cross_entropy(layer(f_train), y_train).backward()
            optimizer.step()
        scores[component] = round(float((layer(f_test).argmax(1) == y_test).float().mean()), 3)
    return scores


def views(x: torch.Tensor, keep: float, jitter: float, hue: float, grey: float) -> torch.Tensor:
    """Random zoomed square (side in [keep, 1]), flip, brightness/contrast/saturation, a partial
    channel rotation for hue, and some grey views."""
    n, device = x.shape[0], x.device
    side = torch.empty(n, device=device).uniform_(keep, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = side * torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
    theta[:, 1, 1] = side
    theta[:, :, 2] = (torch.rand(n, 2, device=device) * 2 - 1) * (1 - side).unsqueeze(1)
    v = F.grid_sample(
        x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="reflection", align_corners=False
    )

    def factor() -> torch.Tensor:
        return 1 + (torch.rand(n, 1, 1, 1, device=device) * 2 - 1) * jitter

    if jitter:
        mean = v.mean((1, 2, 3), keepdim=True)
        v = ((v - mean) * factor() + mean) * factor()
        grey_level = v.mean(1, keepdim=True)
        v = (v - grey_level) * factor() + grey_level
    if hue:
        mix = torch.rand(n, 1, 1, 1, device=device) * hue
        v = v * (1 - mix) + v[:, [1, 2, 0]] * mix
    if grey:
        v = torch.where(torch.rand(n, 1, 1, 1, device=device) < grey, v.mean(1, keepdim=True).expand_as(v), v)
    return v.clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(-1e9)
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device))


def pretrain(
    recipe: tuple[float, float, float, float],
    unlabelled_images: torch.Tensor,
    images: torch.Tensor,
    rows: list[dict[str, str]],
    epochs: int,
    checkpoints: set[int],
    batch: int = 128,
) -> list[dict]:
    torch.manual_seed(0)
    device = unlabelled_images.device
    encoder = densenet121(weights=None).features.to(device)
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1  # Keras momentum 0.9, as the pretrain stage sets
    projector = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 128)).to(device)
    steps = len(unlabelled_images) // batch
    total = epochs * steps
    optimizer = torch.optim.Adam([*encoder.parameters(), *projector.parameters()], 1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # one warm-up epoch, then cosine decay
        optimizer, lambda s: min(1.0, (s + 1) / steps) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    rows_out, started = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        encoder.train()
        projector.train()
        order = torch.randperm(len(unlabelled_images), device=device)
        losses = []
        for step in range(steps):
            x = unlabelled_images[order[step * batch : (step + 1) * batch]]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z = [
                    projector(F.adaptive_avg_pool2d(F.relu(encoder((views(x, *recipe) - MEAN) / STD)), 1).flatten(1))
                    for _ in range(2)
                ]
            loss = nt_xent(z[0].float(), z[1].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        if epoch in checkpoints:
            rows_out.append(
                {
                    "epoch": epoch,
                    "loss": round(float(np.mean(losses)), 3),
                    "seconds": round(time.perf_counter() - started, 1),
                    **probe(encoder, images, rows),
                }
            )
            print(json.dumps(rows_out[-1]), flush=True)
    return rows_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--budget-s", type=float, default=300.0, help="start no new recipe after this")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    global MEAN, STD
    MEAN, STD = MEAN.to(device), STD.to(device)
    images, rows = load(args.crops, args.labels)
    images = images.to(device)
    pool = images[unlabelled(rows)]
    print(f"{len(rows)} labelled crops, {len(pool)} unlabelled for pretraining, on {device}", flush=True)
    torch.manual_seed(0)
    results = {"random base": [{"epoch": 0, **probe(densenet121(weights=None).features.to(device), images, rows)}]}
    print("random base", json.dumps(results["random base"][0]), flush=True)
    checkpoints = {e for e in (3, 10, 20, 40, args.epochs) if e <= args.epochs}
    started = time.perf_counter()
    for name, recipe in RECIPES.items():
        if time.perf_counter() - started > args.budget_s:
            print(f"(budget spent: {name} not run)")
            continue
        print(f"== {name}", flush=True)
        results[name] = pretrain(recipe, pool, images, rows, args.epochs, checkpoints)
    components = sorted({r["component"] for r in rows})
    print(f"\n{'recipe':<22}{'epoch':>6}" + "".join(f"{c[:13]:>14}" for c in components))
    for name, entries in results.items():
        for entry in entries:
            print(f"{name:<22}{entry['epoch']:>6}" + "".join(f"{entry[c]:>14.3f}" for c in components))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
