"""The `resolve` stage: each later stage's settings with the active profile applied, one JSON
file per stage under reports/params/.

DVC's `params:` can only name keys as written in params.yaml, and a profile overrides them from
elsewhere in the file. Stages that are slow to rerun (the detector, crops, each classifier)
depend on these files instead, so they rerun exactly when their own resolved settings change and
not when an unrelated profile key does.

    python -m pipelines.params_stage --params params.yaml --out reports/params
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params


def stage_settings(params: Params) -> dict[str, Any]:
    """File name → the resolved settings that stage's outputs depend on."""
    settings: dict[str, Any] = {
        "detector": params.detector.model_dump(mode="json"),
        "crop": {
            **params.crop.model_dump(mode="json"),
            "score_threshold": params.detector.score_threshold,
            "regions": {name: c.crop_region for name, c in params.components.items()},
            "margins": {name: params.crop_for(name).margin for name in params.components},
            "modes": {name: params.crop_for(name).mode for name in params.components},
        },
    }
    settings["pretrain"] = {
        **params.pretrain.model_dump(mode="json"),
        "used_by": sorted(n for n, c in params.components.items() if c.training.weights not in (None, "imagenet")),
    }
    for name, component in params.components.items():
        settings[f"train-{name}"] = {
            **component.model_dump(mode="json"),
            "crop": params.crop_for(name).model_dump(mode="json"),
        }
    return settings


def write_if_changed(path: Path, content: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    path.write_text(content, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.params_stage", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--out", type=Path, default=Path("reports/params"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
    except ParamsError as error:
        print(f"resolve: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    settings = stage_settings(params)
    for stale in set(args.out.glob("*.json")) - {args.out / f"{name}.json" for name in settings}:
        stale.unlink()
    changed = [
        name
        for name, value in settings.items()
        if write_if_changed(
            args.out / f"{name}.json", json.dumps({"profile": params.profile, **value}, indent=2, sort_keys=True) + "\n"
        )
    ]
    print(
        f"resolve: profile {params.profile}; {len(settings)} stage settings in {args.out}"
        + (f" (changed: {', '.join(changed)})" if changed else " (unchanged)")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
