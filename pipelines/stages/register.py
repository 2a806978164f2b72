"""The weekly flow's `register` step: gate each newly trained classifier against its champion on
the same test split and register it in MLflow, moving an alias only when it passes
(`pipelines.registry`). What `seamline models register` does, for the flow's child process.

    python -m pipelines.stages.register --component jeans-color --report reports/registry
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.classifier import TrainingError
from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, load_params
from pipelines.registry import RegistryError, one_line, register_trained, who_is_acting


def main(argv: Sequence[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.register", description=__doc__.splitlines()[0])
    parser.add_argument("--component", action="append", help="component to register (repeatable; default: all)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of the train stage's models/<c>/")
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--report", type=Path, default=None, help="write each registration as JSON here (a folder)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        chosen = args.component or list(params.components)
        who = who_is_acting()
        for component in chosen:
            done = register_trained(
                params,
                component,
                args.models / component,
                args.crops,
                args.labels,
                who,
                progress=lambda line: print(line, flush=True),
            )
            outcome = f"→ {done.decision.alias}" if done.decision.alias else "→ no alias"
            print(f"register {component}: v{done.version} {outcome} ({done.decision.reason})", flush=True)
            if args.report is not None:
                args.report.mkdir(parents=True, exist_ok=True)
                (args.report / f"{component}.json").write_text(
                    json.dumps(done.as_json(), indent=2) + "\n", encoding="utf-8"
                )
    except (ParamsError, RegistryError, TrainingError) as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    except MlflowException as error:
        print(f"register: MLflow at {params.registry.tracking_uri}: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
