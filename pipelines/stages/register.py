"""The weekly flow's `register` step: gate each newly trained classifier against its champion on
the same test split, and the detector against its champion by a COCO metric on the held-out
annotated images, and register them in MLflow, moving an alias only when one passes
(`pipelines.registry`). What `seamline models register` does, for the flow's child process.

    python -m pipelines.stages.register --component jeans-color --component detector --report reports/registry
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.classifier import TrainingError
from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from pipelines.detect import DetectorError
from pipelines.registry import (
    DETECTOR,
    Registration,
    RegistryError,
    check_name,
    one_line,
    register_detector,
    register_trained,
    registered_names,
    who_is_acting,
)


def register_one(params: Params, name: str, args: argparse.Namespace, who: str) -> Registration:
    """Register one trained model: a component's classifier, or the detector."""
    check_name(params, name)  # an unknown one is a ParamsError naming the known ones

    def progress(line: str) -> None:
        print(line, flush=True)

    if name == DETECTOR:
        return register_detector(params, args.models / DETECTOR, args.annotations, who, progress=progress)
    return register_trained(params, name, args.models / name, args.crops, args.labels, who, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.register", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--component",
        action="append",
        help=f"component to register, or {DETECTOR} (repeatable; default: every component and the {DETECTOR})",
    )
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None)
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="folder of the train stage's models/<c>/ and models/detector/",
    )
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument(
        "--annotations", type=Path, default=Path("data/annotations"), help="the detector's held-out images"
    )
    parser.add_argument("--report", type=Path, default=None, help="write each registration as JSON here (a folder)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        chosen = args.component or registered_names(params)
        who = who_is_acting()
        for component in chosen:
            done = register_one(params, component, args, who)
            outcome = f"→ {done.decision.alias}" if done.decision.alias else "→ no alias"
            print(f"register {component}: v{done.version} {outcome} ({done.decision.reason})", flush=True)
            if args.report is not None:
                args.report.mkdir(parents=True, exist_ok=True)
                (args.report / f"{component}.json").write_text(
                    json.dumps(done.as_json(), indent=2) + "\n", encoding="utf-8"
                )
    except (ParamsError, RegistryError, TrainingError, DetectorError) as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:
        print(f"register: MLflow at {params.registry.tracking_uri}: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
