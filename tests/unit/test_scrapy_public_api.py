"""The crawlers lean on Scrapy's public API only, and the settings hold only settings that
something still reads: a Scrapy upgrade then breaks loudly (a removed public name) or not at all."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import tomllib
from functools import cache
from pathlib import Path

import scrapy
import scrapy.settings.default_settings as scrapy_defaults
from packaging.requirements import Requirement

import crawlers
import crawlers.settings

CRAWLERS_DIR = Path(crawlers.__file__).parent
PYPROJECT = CRAWLERS_DIR.parent / "pyproject.toml"
SCRAPY_DIR = Path(scrapy.__file__).parent

# Settings Scrapy no longer reads, though old project templates still write them.
DEAD_SETTINGS = {
    "REQUEST_FINGERPRINTER_IMPLEMENTATION": "deprecated in Scrapy 2.12, no effect since, removed in 2.14",
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@cache
def scrapy_private_names() -> frozenset[str]:
    """Private names of Scrapy's classes: their `_methods` and the `self._attributes` they keep."""
    names: set[str] = set()
    for path in SCRAPY_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef) and is_private(inner.name):
                    names.add(inner.name)
                elif (
                    isinstance(inner, ast.Attribute)
                    and is_private(inner.attr)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id in ("self", "cls")
                ):
                    names.add(inner.attr)
    return frozenset(names)


def crawler_sources() -> list[Path]:
    return sorted(CRAWLERS_DIR.rglob("*.py"))


def is_private_scrapy_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "scrapy" and any(is_private(part) for part in parts)


def private_scrapy_uses(tree: ast.AST, private_names: frozenset[str]) -> list[tuple[int, str]]:
    """(line, what) for each `x._name` where `_name` is private to Scrapy, and each import of a
    private Scrapy module or name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in private_names:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "scrapy":
            if is_private_scrapy_module(node.module or ""):
                found.append((node.lineno, f"{node.module}"))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names if is_private(alias.name)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if is_private_scrapy_module(alias.name)]
    return found


def test_the_checker_sees_what_it_looks_for() -> None:
    """The checks below pass only because the crawlers are clean, not because they see nothing."""
    assert {"_retry", "_cbs", "_update_stores"} <= scrapy_private_names()
    source = (
        "from scrapy.utils.misc import _load_objects\n"
        "import scrapy.utils._compression\n"
        "spider._cbs = []\n"
        "retry = super()._retry(request, reason)\n"
        "self._page(url)\n"  # a private name of our own: allowed
    )
    found = {what for _, what in private_scrapy_uses(ast.parse(source), scrapy_private_names())}
    assert found == {"scrapy.utils.misc._load_objects", "scrapy.utils._compression", "._cbs", "._retry"}


def test_crawlers_use_no_private_scrapy_name() -> None:
    uses = {
        str(path.relative_to(CRAWLERS_DIR)): found
        for path in crawler_sources()
        if (found := private_scrapy_uses(ast.parse(path.read_text(encoding="utf-8")), scrapy_private_names()))
    }
    assert uses == {}, "Scrapy internals in use, a public API would do"


def crawler_classes() -> list[type]:
    classes = []
    for module_info in pkgutil.walk_packages(crawlers.__path__, "crawlers."):
        module = importlib.import_module(module_info.name)
        classes += [cls for _, cls in inspect.getmembers(module, inspect.isclass) if cls.__module__ == module.__name__]
    return classes


# What Python's ABCMeta sets on every subclass of an abstract class (Scrapy's MediaPipeline).
ABC_BOOKKEEPING = {"_abc_impl"}


def test_no_crawler_class_overrides_a_private_scrapy_method() -> None:
    """An override of a private method (RetryMiddleware._retry, say) silently stops being called
    when Scrapy renames or inlines it."""
    overrides = [
        f"{cls.__qualname__}.{name} overrides {base.__module__}.{base.__qualname__}.{name}"
        for cls in crawler_classes()
        for name in vars(cls)
        if is_private(name) and name not in ABC_BOOKKEEPING
        for base in cls.__mro__[1:]
        if base.__module__.split(".")[0] == "scrapy" and name in vars(base)
    ]
    assert overrides == []


def project_setting_names() -> list[str]:
    return [name for name in vars(crawlers.settings) if name.isupper()]


def names_read_by_the_crawlers() -> set[str]:
    """Every string constant in the crawlers package but its settings module: where our own
    settings (SEAMLINE_*, BACKOFF_*) are read."""
    settings_module = Path(crawlers.settings.__file__)
    return {
        node.value
        for path in crawler_sources()
        if path != settings_module
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_settings_hold_no_setting_scrapy_no_longer_reads() -> None:
    assert [name for name in project_setting_names() if name in DEAD_SETTINGS] == []


def test_every_setting_is_read_by_scrapy_or_by_the_crawlers() -> None:
    """A setting neither Scrapy nor our code reads is dead (removed upstream, or mistyped)."""
    read_by_us = names_read_by_the_crawlers()
    unread = [name for name in project_setting_names() if not hasattr(scrapy_defaults, name) and name not in read_by_us]
    assert unread == []


def test_the_scrapy_requirement_excludes_versions_the_crawlers_cannot_run_on() -> None:
    """The spiders' `async def start()` needs Scrapy 2.13; the images pipeline's coroutine
    `media_downloaded` is awaited only from 2.15 (2.14 stores no image and reports no error)."""
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    [scrapy_requirement] = [Requirement(d) for d in dependencies if Requirement(d).name.lower() == "scrapy"]
    allowed = scrapy_requirement.specifier
    assert not allowed.contains("2.14.2") and allowed.contains("2.15.0") and allowed.contains(scrapy.__version__)
