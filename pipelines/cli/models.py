"""`seamline models …`: what ML leads use to register, compare, promote and roll back each
component's champion and the detector's (registered model `detector`), with every alias move in
the ledger."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli.common import (
    Crops,
    Labels,
    ParamsFile,
    Profile,
    chosen_components,
    component_or_fail,
    fail,
    out_console,
    params_or_fail,
    registry_call,
    say,
)
from pipelines.config import DEFAULT_PARAMS_PATH, Params
from pipelines.registry import DETECTOR

app = typer.Typer(
    help="The model registry: register, list, compare, promote and roll back each component's champion "
    "and the detector's.",
    no_args_is_help=True,
)

Who = Annotated[
    str | None, typer.Option("--who", help="Who is acting, for the ledger (default: $SEAMLINE_USER or the login name).")
]
Annotations = Annotated[
    Path,
    typer.Option(
        "--annotations", help="The annotations (data/annotations): the detector's held-out images.", file_okay=False
    ),
]
Model = Annotated[str, typer.Argument(help="A component, e.g. shirt-pattern, or `detector`.")]


def model_or_fail(params: Params, name: str) -> str:
    """`name` if it is a component or the detector, else a failure listing the components."""
    return name if name == DETECTOR else component_or_fail(params, name)


def gate_metric(params: Params, name: str) -> str:
    """The metric the model's gate compares (and `models list` shows)."""
    return params.registry.detector_gate_metric if name == DETECTOR else params.registry.gate_metric


@app.command("register")
def register(
    component: Annotated[
        str | None,
        typer.Argument(
            help="Component whose trained model (models/<c>/) to register, or `detector` (models/detector/)."
        ),
    ] = None,
    all_components: Annotated[
        bool, typer.Option("--all", help="Register every component's trained model and the detector.")
    ] = False,
    models_dir: Annotated[
        Path, typer.Option("--models", help="Where train@<c> wrote models/<c>/ (and the detector models/detector/).")
    ] = Path("models"),
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    annotations: Annotations = Path("data/annotations"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Register each component's last trained model and gate it against the champion.

    The new version is loaded back by registry URI and queried on known images, scored with the
    champion on the same test split, and becomes `challenger` (or `champion`, with
    registry.auto_promote or when there is none) only if it beats the champion by
    registry.min_improvement and keeps every class's recall at or above registry.min_class_recall.
    A failing version is registered without alias, with the reason in its `seamline.gate_reason`
    tag. The detector (`detector`) is gated the same way on registry.detector_gate_metric, a COCO
    metric scored for it and its champion on the held-out annotated images.
    """
    from pipelines.classifier import CLASSIFIER_FILE, SKIPPED_FILE
    from pipelines.detect import DETECTOR_FILE
    from pipelines.registry import register_detector, register_trained, who_is_acting

    params = params_or_fail(params_file, profile)
    if component == DETECTOR and not all_components:
        names = [DETECTOR]
    else:
        names = chosen_components(params, component, all_components) + ([DETECTOR] if all_components else [])
    for name in names:
        if name == DETECTOR:
            if all_components and not (models_dir / DETECTOR / DETECTOR_FILE).is_file():
                say(f"{DETECTOR}: [yellow]no trained detector[/] in {models_dir / DETECTOR}; nothing to register")
                continue
            register_one = partial(register_detector, params, models_dir / DETECTOR, annotations)
        else:
            # --all registers what the last run trained; a component it skipped keeps its champion.
            skipped = models_dir / name / SKIPPED_FILE
            if all_components and skipped.is_file():
                reason = json.loads(skipped.read_text(encoding="utf-8")).get("reason", "")
                say(f"{name}: [yellow]not trained in the last run[/] ({reason}); the champion stays")
                continue
            if all_components and not (models_dir / name / CLASSIFIER_FILE).is_file():
                say(f"{name}: [yellow]no trained model[/] in {models_dir / name}; nothing to register")
                continue
            register_one = partial(register_trained, params, name, models_dir / name, crops, labels)
        done = registry_call(params, partial(register_one, who or who_is_acting(), progress=say))
        outcome = f"[green]→ {done.decision.alias}[/]" if done.decision.alias else "[yellow]→ no alias[/]"
        say(f"{name}: v{done.version} {outcome}  {done.decision.reason}")


@app.command("list")
def list_models(profile: Profile = None, params_file: ParamsFile = DEFAULT_PARAMS_PATH) -> None:
    """Every component's registered model and the detector's: versions, champion, challenger, last alias move."""
    from rich.table import Table

    from pipelines.registry import CHALLENGER, CHAMPION, Registry, registered_names

    params = params_or_fail(params_file, profile)
    registry = registry_call(params, lambda: Registry(params.registry))
    table = Table("model", "versions", "champion", "challenger", "last move")
    for name in registered_names(params):
        if not registry_call(params, lambda name=name: registry.model_exists(name)):
            table.add_row(name, "0", "-", "-", "not registered")
            continue
        versions = registry_call(params, lambda name=name: registry.versions(name))
        aliases = registry.aliases(name)
        by_number = {str(v.version): v for v in versions}
        history = registry.history(name)
        last = history[-1] if history else None
        table.add_row(
            name,
            str(len(versions)),
            _scored(by_number, aliases.get(CHAMPION), gate_metric(params, name)),
            _scored(by_number, aliases.get(CHALLENGER), gate_metric(params, name)),
            f"{last.time} {last.alias} v{last.from_version or '-'}→v{last.to_version or '-'} by {last.who}"
            if last
            else "-",
        )
    out_console.print(table)
    say(f"registry: {registry.uri}")


def _scored(versions: dict[str, Any], version: str | None, metric: str) -> str:
    if version is None or version not in versions:
        return "-"
    value = versions[version].tags.get(
        f"seamline.gate_test_{metric}", versions[version].tags.get(f"seamline.test_{metric}", "?")
    )
    return f"v{version} ({metric} {value})"


@app.command("show")
def show(
    component: Model,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """A component's (or the detector's) versions and its alias history.

    Per version: gate outcome, test metrics (the detector's: COCO metrics on the held-out images),
    base weights, data version and aliases; the history lists every alias move, oldest first."""
    from dataclasses import asdict

    from rich.table import Table

    from pipelines.registry import DETECTOR_METRICS, Registry

    params = params_or_fail(params_file, profile)
    model_or_fail(params, component)
    metrics = ("box_map", "box_map50", "mean_iou") if component == DETECTOR else ("macro_f1", "accuracy")
    registry = registry_call(params, lambda: Registry(params.registry))
    if not registry_call(params, lambda: registry.model_exists(component)):
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
            **{
                metric: v.tags.get(f"seamline.gate_test_{metric}", "-")
                for metric in (DETECTOR_METRICS if component == DETECTOR else metrics)
            },
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
    table = Table("v", "created", "aliases", "gate", *metrics, "base weights", "data", "gate reason", title=component)
    for row in rows:
        table.add_row(
            row["version"],
            row["created"],
            ", ".join(row["aliases"]) or "-",
            row["gate"],
            *(row[metric] for metric in metrics),
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


@app.command("compare")
def compare(
    component: Model,
    first: Annotated[str, typer.Argument(help="A version number.")],
    second: Annotated[str, typer.Argument(help="Another version number.")],
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    annotations: Annotations = Path("data/annotations"),
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Two versions side by side, both scored now on the same data.

    A classifier on the current test split (accuracy, macro-F1 and each class's recall); the
    detector on the held-out annotated images (COCO box and mask mAP, mAP@0.5, mean IoU); then
    the training params in which their runs differ."""
    from rich.table import Table

    from pipelines.registry import Registry

    params = params_or_fail(params_file, profile)
    model_or_fail(params, component)
    registry = registry_call(params, lambda: Registry(params.registry))
    for version in (first, second):
        registry_call(params, lambda version=version: registry.version(component, version))
    scorer = _detector_scores if component == DETECTOR else _classifier_scores
    title, rows = registry_call(
        params, lambda: scorer(params, registry, component, (first, second), crops, labels, annotations)
    )
    runs = {v: registry.client.get_run(registry.version(component, v).run_id).data.params for v in (first, second)}
    table = Table("", f"v{first}", f"v{second}", "Δ", title=title)
    for name, a, b in rows:
        table.add_row(name, f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}")
    out_console.print(table)
    differing = sorted(k for k in set(runs[first]) | set(runs[second]) if runs[first].get(k) != runs[second].get(k))
    if differing:
        changes = Table("param", f"v{first}", f"v{second}", title="training params that differ")
        for key in differing:
            changes.add_row(key, runs[first].get(key, "-"), runs[second].get(key, "-"))
        out_console.print(changes)
    else:
        say("training params: identical")


Rows = list[tuple[str, float, float]]


def _classifier_scores(
    params: Params, registry: Any, name: str, versions: tuple[str, str], crops: Path, labels: Path, _: Path
) -> tuple[str, Rows]:
    """Both versions scored on the component's current test split: the table's title and rows."""
    from pipelines.registry import score, test_images

    test = test_images(params, name, crops, labels)
    first, second = (score(registry.load(name, v), test.paths, test.labels) for v in versions)
    rows = [
        ("accuracy", first.accuracy, second.accuracy),
        ("macro-F1", first.macro_f1, second.macro_f1),
        *[
            (f"recall {c}", first.recall.get(c, 0.0), second.recall.get(c, 0.0))
            for c in params.components[name].classes
        ],
    ]
    return f"{name}: {len(test.paths)} test images", rows


def _detector_scores(
    params: Params, registry: Any, name: str, versions: tuple[str, str], _: Path, __: Path, annotations: Path
) -> tuple[str, Rows]:
    """Both detector versions scored with COCOeval on the held-out annotated images."""
    from pipelines.registry import DETECTOR_METRICS, held_out_images, score_detector

    held = held_out_images(params, annotations)
    first, second = (score_detector(registry.load_detector(v), held, params) for v in versions)
    rows = [(metric, first.metric(metric), second.metric(metric)) for metric in DETECTOR_METRICS]
    return f"{name}: {len(held.paths)} held-out images", rows


@app.command("promote")
def promote(
    component: Model,
    model_version: Annotated[str, typer.Argument(metavar="VERSION", help="The version to promote.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the ledger (required).")],
    alias: Annotated[str, typer.Option("--alias", help="champion (default) or challenger.")] = "champion",
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    annotations: Annotations = Path("data/annotations"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Point an alias (champion by default) at a version.

    The version is first loaded back by URI and queried on known images (the detector on its
    held-out annotated images). The move is recorded in the registry and the ledger; if recording
    fails, the alias goes back where it was."""
    from pipelines.registry import CHALLENGER, CHAMPION, promote, who_is_acting

    params = params_or_fail(params_file, profile)
    model_or_fail(params, component)
    if alias not in (CHAMPION, CHALLENGER):
        fail(f"--alias {alias}: expected champion or challenger")
    if not reason.strip():
        fail("--reason must say why")
    entry = registry_call(
        params,
        lambda: promote(
            params, component, model_version, reason, who or who_is_acting(), crops, labels, alias, annotations
        ),
    )
    say(f"{component}: {entry.alias} v{entry.from_version or '-'} → v{entry.to_version} ({entry.who}: {entry.why})")
    if entry.alias == CHAMPION:
        say(_RETAG_HINT)


@app.command("rollback")
def rollback(
    component: Model,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the ledger.")] = "",
    crops: Crops = Path("data/crops"),
    labels: Labels = Path("data/labels"),
    annotations: Annotations = Path("data/annotations"),
    who: Who = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Move `champion` back to the champion before the current one.

    The target comes from the alias history and passes the same load-and-query check as a
    promotion."""
    from pipelines.registry import rollback, who_is_acting

    params = params_or_fail(params_file, profile)
    model_or_fail(params, component)
    entry = registry_call(
        params, lambda: rollback(params, component, reason, who or who_is_acting(), crops, labels, annotations)
    )
    say(f"{component}: champion v{entry.from_version} → v{entry.to_version} ({entry.who}: {entry.why})")
    say(_RETAG_HINT)


_RETAG_HINT = (
    "search and predict: `seamline predict` uses the new champion now; a running `seamline serve` switches to it "
    "and re-tags its catalogue within search.reload_minutes; `seamline index` re-tags it now"
)
