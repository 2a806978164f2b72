"""`seamline models …`, `seamline predict` and `seamline mlflow-ui`: what ML leads use to promote
and roll back each component's champion, and to try the champions on photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pipelines.cli import (
    DEFAULT_PARAMS_PATH,
    ParamsFile,
    _command_group,
    app,
    err,
    fail,
    out_console,
)
from pipelines.config import Params, ParamsError, load_params

models_app = _command_group(
    "models", "The model registry: register, list, compare, promote and roll back each component's champion."
)

Profile = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Params profile (default: params.yaml's `profile`).", envvar="SEAMLINE_PROFILE"
    ),
]
Crops = Annotated[
    Path,
    typer.Option(
        "--crops", help="Crop stage output: its test crops are the known images every load check uses.", file_okay=False
    ),
]
Labels = Annotated[Path, typer.Option("--labels", help="Label stage output (the test split).", file_okay=False)]
Who = Annotated[
    str | None, typer.Option("--who", help="Who is acting, for the ledger (default: $SEAMLINE_USER or the login name).")
]

T = TypeVar("T")


def _params(params_file: Path, profile: str | None) -> Params:
    try:
        return load_params(params_file, profile)
    except ParamsError as error:
        fail(str(error))


def _component(params: Params, component: str) -> str:
    if component not in params.components:
        fail(f"unknown component {component!r} (known: {', '.join(params.components)})")
    return component


def _registry_call(params: Params, action: Callable[[], T]) -> T:
    """Run a registry action; its errors, and an unreachable or refusing server, are one line."""
    from mlflow.exceptions import MlflowException

    from pipelines.registry import RegistryError, one_line
    from pipelines.train_stage import TrainingError

    try:
        return action()
    except (RegistryError, TrainingError) as error:
        fail(str(error))
    except MlflowException as error:
        from pipelines.tracking import tracking_uri

        fail(f"MLflow at {tracking_uri(params.registry)}: {one_line(error)}")


def _who(who: str | None) -> str:
    from pipelines.registry import who_is_acting

    return who or who_is_acting()


@models_app.command("register")
def models_register(
    component: Annotated[
        str | None, typer.Argument(help="Component whose trained model (models/<c>/) to register.")
    ] = None,
    all_components: Annotated[bool, typer.Option("--all", help="Register every component's trained model.")] = False,
    models_dir: Annotated[
        Path, typer.Option("--models", help="Where train@<c> wrote models/<c>/.", file_okay=False)
    ] = Path("models"),
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Register each component's last trained model and gate it against the champion.

    The new version is loaded back by registry URI and queried on known images, scored with the champion on the same test split,
    and becomes `challenger` (or `champion`, with registry.auto_promote or when there is none)
    only if it beats the champion by registry.min_improvement and keeps every class's recall at
    or above registry.min_class_recall. A failing version is registered without alias, with
    the reason in its `seamline.gate_reason` tag.
    """
    from pipelines.registry import register_trained

    params = _params(params_file, profile)
    if all_components == (component is not None):
        fail("name one COMPONENT or give --all")
    chosen = list(params.components) if all_components else [_component(params, component)]
    for name in chosen:
        done = _registry_call(
            params,
            lambda name=name: register_trained(
                params,
                name,
                models_dir / name,
                crops,
                labels,
                _who(who),
                progress=lambda line: out_console.print(line, highlight=False),
            ),
        )
        outcome = f"[green]→ {done.decision.alias}[/]" if done.decision.alias else "[yellow]→ no alias[/]"
        out_console.print(f"{name}: v{done.version} {outcome}  {done.decision.reason}", highlight=False)


@models_app.command("list")
def models_list(profile: Profile = None, params_file: ParamsFile = DEFAULT_PARAMS_PATH) -> None:
    """Every component's registered model: versions, champion, challenger, last alias move."""
    from rich.table import Table

    from pipelines.registry import CHALLENGER, CHAMPION, Registry

    params = _params(params_file, profile)
    registry = _registry_call(params, lambda: Registry(params.registry))
    table = Table("component", "versions", "champion", "challenger", "last move")
    for name in params.components:
        if not _registry_call(params, lambda name=name: registry.model_exists(name)):
            table.add_row(name, "0", "-", "-", "not registered")
            continue
        versions = _registry_call(params, lambda name=name: registry.versions(name))
        aliases = registry.aliases(name)
        by_number = {str(v.version): v for v in versions}
        history = registry.history(name)
        last = history[-1] if history else None
        table.add_row(
            name,
            str(len(versions)),
            _scored(by_number, aliases.get(CHAMPION), params.registry.gate_metric),
            _scored(by_number, aliases.get(CHALLENGER), params.registry.gate_metric),
            f"{last.time} {last.alias} v{last.from_version or '-'}→v{last.to_version or '-'} by {last.who}"
            if last
            else "-",
        )
    out_console.print(table)
    out_console.print(f"registry: {registry.uri}", highlight=False)


def _scored(versions: dict[str, Any], version: str | None, metric: str) -> str:
    if version is None or version not in versions:
        return "-"
    value = versions[version].tags.get(
        f"seamline.gate_test_{metric}", versions[version].tags.get(f"seamline.test_{metric}", "?")
    )
    return f"v{version} ({metric} {value})"


@models_app.command("show")
def models_show(
    component: Annotated[str, typer.Argument(help="Component, e.g. shirt-pattern.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """A component's versions and its alias history.

    Per version: gate outcome, test metrics, base weights, data version and aliases; the
    history lists every alias move, oldest first."""
    from dataclasses import asdict

    from rich.table import Table

    from pipelines.registry import Registry

    params = _params(params_file, profile)
    _component(params, component)
    registry = _registry_call(params, lambda: Registry(params.registry))
    if not _registry_call(params, lambda: registry.model_exists(component)):
        fail(f"{component}: not registered at {registry.uri} (seamline models register {component})")
    versions = registry.versions(component)
    aliases = registry.aliases(component)
    holders: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        holders.setdefault(version, []).append(alias)
    history = registry.history(component)
    rows = [
        {
            "version": str(v.version),
            "created": _time(v.creation_timestamp),
            "aliases": holders.get(str(v.version), []),
            "gate": v.tags.get("seamline.gate", "-"),
            "macro_f1": v.tags.get("seamline.gate_test_macro_f1", "-"),
            "accuracy": v.tags.get("seamline.gate_test_accuracy", "-"),
            "base_weights": v.tags.get("seamline.base_weights", "-"),
            "data_version": v.tags.get("seamline.data_version", "-"),
            "run_id": v.run_id,
            "reason": v.tags.get("seamline.gate_reason", ""),
        }
        for v in versions
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "component": component,
                    "aliases": aliases,
                    "versions": rows,
                    "history": [asdict(entry) for entry in history],
                },
                indent=2,
            )
        )
        return
    table = Table(
        "v", "created", "aliases", "gate", "macro-F1", "acc", "base weights", "data", "gate reason", title=component
    )
    for row in rows:
        table.add_row(
            row["version"],
            row["created"],
            ", ".join(row["aliases"]) or "-",
            row["gate"],
            row["macro_f1"],
            row["accuracy"],
            str(row["base_weights"]),
            row["data_version"],
            row["reason"],
        )
    out_console.print(table)
    moves = Table("time", "alias", "from", "to", "action", "who", "why", title="alias history")
    for entry in history:
        moves.add_row(
            entry.time,
            entry.alias,
            f"v{entry.from_version}" if entry.from_version else "-",
            f"v{entry.to_version}" if entry.to_version else "-",
            entry.action,
            entry.who,
            entry.why,
        )
    out_console.print(moves)


def _time(milliseconds: int | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.gmtime((milliseconds or 0) / 1000))


@models_app.command("compare")
def models_compare(
    component: Annotated[str, typer.Argument(help="Component, e.g. shirt-pattern.")],
    first: Annotated[str, typer.Argument(help="A version number.")],
    second: Annotated[str, typer.Argument(help="Another version number.")],
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Two versions side by side, both scored now on the current test split.

    Accuracy, macro-F1 and each class's recall, and the training params in which their runs
    differ."""
    from rich.table import Table

    from pipelines.registry import Registry, score, test_images

    params = _params(params_file, profile)
    _component(params, component)
    registry = _registry_call(params, lambda: Registry(params.registry))
    test = _registry_call(params, lambda: test_images(params, component, crops, labels))
    scored = {}
    runs = {}
    for version in (first, second):
        found = _registry_call(params, lambda version=version: registry.version(component, version))
        scored[version] = _registry_call(
            params, lambda version=version: score(registry.load(component, version), test.paths, test.labels)
        )
        runs[version] = registry.client.get_run(found.run_id).data.params
    table = Table("", f"v{first}", f"v{second}", "Δ", title=f"{component}: {len(test.paths)} test images")
    for name, a, b in [
        ("accuracy", scored[first].accuracy, scored[second].accuracy),
        ("macro-F1", scored[first].macro_f1, scored[second].macro_f1),
        *[
            (f"recall {c}", scored[first].recall.get(c, 0.0), scored[second].recall.get(c, 0.0))
            for c in params.components[component].classes
        ],
    ]:
        table.add_row(name, f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}")
    out_console.print(table)
    differing = sorted(k for k in set(runs[first]) | set(runs[second]) if runs[first].get(k) != runs[second].get(k))
    if differing:
        changes = Table("param", f"v{first}", f"v{second}", title="training params that differ")
        for key in differing:
            changes.add_row(key, runs[first].get(key, "-"), runs[second].get(key, "-"))
        out_console.print(changes)
    else:
        out_console.print("training params: identical", highlight=False)


@models_app.command("promote")
def models_promote(
    component: Annotated[str, typer.Argument(help="Component, e.g. shirt-pattern.")],
    model_version: Annotated[str, typer.Argument(metavar="VERSION", help="The version to promote.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the ledger (required).")],
    alias: Annotated[str, typer.Option("--alias", help="champion (default) or challenger.")] = "champion",
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Point an alias (champion by default) at a version.

    The version is first loaded back by URI and queried on known images. The move is recorded in the registry and the ledger; if recording fails, the alias
    goes back where it was."""
    from pipelines.registry import CHALLENGER, CHAMPION, promote

    params = _params(params_file, profile)
    _component(params, component)
    if alias not in (CHAMPION, CHALLENGER):
        fail(f"--alias {alias}: expected champion or challenger")
    if not reason.strip():
        fail("--reason must say why")
    entry = _registry_call(
        params, lambda: promote(params, component, model_version, reason, _who(who), crops, labels, alias)
    )
    out_console.print(
        f"{component}: {entry.alias} v{entry.from_version or '-'} → v{entry.to_version} ({entry.who}: {entry.why})",
        highlight=False,
    )
    if entry.alias == CHAMPION:
        out_console.print(_RETAG_HINT, highlight=False)


@models_app.command("rollback")
def models_rollback(
    component: Annotated[str, typer.Argument(help="Component, e.g. shirt-pattern.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the ledger.")] = "",
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Move `champion` back to the champion before the current one.

    The target comes from the alias history and passes the same load-and-query check as a
    promotion."""
    from pipelines.registry import rollback

    params = _params(params_file, profile)
    _component(params, component)
    entry = _registry_call(params, lambda: rollback(params, component, reason, _who(who), crops, labels))
    out_console.print(
        f"{component}: champion v{entry.from_version} → v{entry.to_version} ({entry.who}: {entry.why})", highlight=False
    )
    out_console.print(_RETAG_HINT, highlight=False)


_RETAG_HINT = (
    "search: a running `seamline serve` switches to the new champion and re-tags its catalogue within search.reload_minutes; "
    "`seamline index` re-tags it now"
)


@app.command("predict")
def predict(
    images: Annotated[list[Path], typer.Argument(help="Photos to tag.", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo, one per line.")] = False,
    component: Annotated[
        list[str] | None, typer.Option("--component", "-c", help="Only these components (repeatable).")
    ] = None,
    alias: Annotated[
        str, typer.Option("--alias", help="Which registered version of each component to use.")
    ] = "champion",
    batch: Annotated[int, typer.Option("--batch", help="Photos per detector/classifier batch.", min=1)] = 16,
    detector_dir: Annotated[Path, typer.Option("--detector", help="The trained detector.", file_okay=False)] = Path(
        "models/detector"
    ),
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Tag photos with each component's champion model from the registry.

    The detector finds the garment, each component's region is cropped as in training, and the
    classifier answers (shirt components only on shirts, jeans components only on jeans). A label below the
    threshold tuned on validation prints as `unknown`, with the best guess beside it.
    """
    from pipelines.detect import DetectorError, chunks, read_rgb
    from pipelines.predict import Tagger

    params = _params(params_file, profile)
    for name in component or []:
        _component(params, name)
    try:
        tagger = _registry_call(params, lambda: Tagger.from_registry(params, detector_dir, component, alias))
    except DetectorError as error:
        fail(str(error))
    if not as_json:
        chosen = ", ".join(f"{name} v{c.version}" for name, c in tagger.classifiers.items())
        out_console.print(f"models ({alias}): {chosen}", highlight=False)
    failed = 0
    for group in chunks(images, batch):
        pixels = {path: read_rgb(path) for path in group}
        usable = [path for path in group if pixels[path] is not None]
        for path in group:
            if pixels[path] is None:
                failed += 1
                err.print(f"[red]error[/] {path}: not a decodable image", highlight=False, soft_wrap=True)
        for path, tags in zip(usable, tagger.tag([pixels[path] for path in usable])):
            if as_json:
                print(json.dumps({"image": str(path), **tags.as_json()}), flush=True)
                continue
            out_console.print(f"{path}", highlight=False)
            for name, tag in tags.tags.items():
                guess = f" (best guess {tag.best_guess})" if tag.unknown else ""
                out_console.print(f"  {name:<14} {tag.label:<12} {tag.probability:.2f}{guess}", highlight=False)
            for name, why in tags.skipped.items():
                out_console.print(f"  {name:<14} -            {why}", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command("mlflow-ui")
def mlflow_ui(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 5000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Open the local runs and registry in MLflow's UI.

    Starts a real `mlflow server` (mlflow/server.sh) on the configured SQLite store and artifact
    folder. Ctrl-C stops it."""
    params = _params(params_file, profile)
    store = params.registry.tracking_uri
    if not store.startswith(("sqlite:", "postgresql", "mysql")):
        fail(f"registry.tracking_uri is {store}: that is already a server; open it in a browser")
    script = Path(__file__).resolve().parents[1] / "mlflow" / "server.sh"
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": store,
        "MLFLOW_HOST": host,
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": params.registry.artifact_root,
        "MLFLOW_BIN": str(Path(sys.executable).with_name("mlflow")),
    }
    out_console.print(f"MLflow UI on http://{host}:{port} (store {store}); Ctrl-C stops it", highlight=False)
    try:
        code = subprocess.run(["bash", str(script)], env=env, check=False).returncode
    except KeyboardInterrupt:
        code = 0
    if code not in (0, 130):
        raise typer.Exit(code)
