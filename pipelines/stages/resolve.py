"""The `resolve` stage: each later stage's settings with the active profile applied, one JSON
file per stage under reports/params/.

DVC's `params:` can only name keys as written in params.yaml, and a profile overrides them from
elsewhere in the file. Stages that are slow to rerun (the detector, crops, each classifier)
depend on these files instead, so they rerun exactly when their own resolved settings change and
not when an unrelated profile key does.

    python -m pipelines.stages.resolve --params params.yaml --out reports/params
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, load_params, stage_settings


def write_if_changed(path: Path, content: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    path.write_text(content, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.resolve", description=__doc__.splitlines()[0])
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
