"""The `pretrain` stage: the classifiers' backbone pretrained self-supervised on the unlabelled
crops (`pipelines.pretraining`), written to models/pretrain/base.weights.h5 and tracked in MLflow;
a no-op for a profile in which no component's `training.weights` names it.

    python -m pipelines.stages.pretrain --params params.yaml --crops data/crops --out models/pretrain
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from pipelines.pretraining import (
    BASE_WEIGHTS_FILE,
    RECORD_FILE,
    PretrainError,
    components_using,
    pretrain_base,
    unlabelled_crops,
)
from pipelines.tracking import flat_params, mlflow_run


def pretrain_backbone(
    params: Params, crops: Path, out: Path, progress: Callable[[str], None] = print, force: bool = False
) -> dict[str, Any]:
    import mlflow

    pretrain = params.pretrain
    users = components_using(params, out)
    if not users and not force:
        # The stage stays in the DAG for every profile; it costs nothing where no one uses it.
        out.mkdir(parents=True, exist_ok=True)
        (out / BASE_WEIGHTS_FILE).unlink(missing_ok=True)
        record = {"skipped": f"no component's training.weights names {out / BASE_WEIGHTS_FILE}"}
        (out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        progress(f"pretrain: skipped ({record['skipped']}; --force runs it anyway)")
        return record
    files = unlabelled_crops(crops, params, pretrain.max_images)
    progress(
        f"pretrain: {len(files)} unlabelled crops, {pretrain.backbone} at {pretrain.image_size} px, "
        f"{pretrain.epochs} epochs of batch {pretrain.batch_size} (SimCLR, temperature {pretrain.temperature})"
    )
    history: list[dict[str, float]] = []
    with mlflow_run(
        params.registry, "pretrain", f"pretrain-{pretrain.backbone}", {"seamline.profile": params.profile}
    ) as run:
        mlflow.log_params(flat_params(pretrain.model_dump(mode="json"), "pretrain."))
        mlflow.log_param("images", len(files))

        def on_epoch(epoch: int, loss: float, elapsed: float) -> None:
            history.append({"epoch": epoch, "loss": round(loss, 4), "seconds": round(elapsed, 1)})
            mlflow.log_metric("contrastive_loss", loss, step=epoch)
            progress(
                f"pretrain: epoch {epoch}/{pretrain.epochs}  contrastive loss {loss:.3f}  "
                f"({elapsed / epoch:.0f} s/epoch, {elapsed / epoch * (pretrain.epochs - epoch) / 60:.1f} min left)"
            )

        started = time.perf_counter()
        encoder = pretrain_base(pretrain, files, on_epoch)
        seconds = time.perf_counter() - started
        out.mkdir(parents=True, exist_ok=True)
        encoder.get_layer("base").save_weights(out / BASE_WEIGHTS_FILE)
        record = {
            "backbone": pretrain.backbone,
            "image_size": pretrain.image_size,
            "images": len(files),
            "epochs": pretrain.epochs,
            "seconds": round(seconds, 1),
            "final_loss": history[-1]["loss"],
            "history": history,
            "used_by": users,
            "mlflow_run_id": run.info.run_id,
            "params": pretrain.model_dump(mode="json"),
        }
        (out / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        mlflow.log_metric("pretrain_seconds", seconds)
        mlflow.log_artifacts(str(out), "pretrain")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--out", type=Path, default=Path("models/pretrain"))
    parser.add_argument("--force", action="store_true", help="pretrain even if no component uses the result")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        record = pretrain_backbone(
            params, args.crops, args.out, progress=lambda line: print(line, flush=True), force=args.force
        )
    except (ParamsError, PretrainError) as error:
        print(f"pretrain: {error}", file=sys.stderr)
        return 2
    if "skipped" in record:
        return 0
    print(
        f"pretrain: {record['epochs']} epochs in {record['seconds'] / 60:.1f} min, final loss "
        f"{record['final_loss']:.3f} "
        f"→ {args.out / BASE_WEIGHTS_FILE}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
