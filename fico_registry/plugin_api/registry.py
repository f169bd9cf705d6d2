"""Plugin discovery: one pluggy manager, entry-point group `fico_registry`, failure isolation.

Environment:
  FICO_LOAD_PLUGINS    comma-separated allow-list of plugin (entry point or distribution) names;
                       set but empty loads no external plugin. Built-ins always load.
  FICO_DISABLE_PLUGINS comma-separated plugin (entry point or distribution) names never to load.
  FICO_SLOW_PLUGIN_MS  a plugin module taking longer than this to import gets a warning (default 100).
  FICO_STRICT_PLUGINS  "1": any plugin problem raises PluginError instead of being reported.
  FICO_TRACE_PLUGINS   "1": log every hook call (plugin, hook, what it registered, time) to stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata as metadata
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from fico_registry.errors import (
    AmbiguousDatasetError,
    AmbiguousModelError,
    PluginError,
    UnknownDatasetError,
    UnknownModelError,
)
from fico_registry.plugin_api import checks as plugin_checks
from fico_registry.plugin_api import hookspecs
from fico_registry.plugin_api.cards import DatasetSpec, FeatureSpec, ModelSpec, TrainerSpec

ENTRY_POINT_GROUP = "fico_registry"
BUILTIN_PLUGINS = ("fico_registry.builtins",)
CORE_DISTRIBUTION = "fico-registry"

_SPEC_TYPES: dict[str, type] = {
    "fico_models": ModelSpec,
    "fico_datasets": DatasetSpec,
    "fico_feature_pipelines": FeatureSpec,
    "fico_trainers": TrainerSpec,
}


@dataclass
class PluginProblem:
    """Something a plugin got wrong; reported, and fatal only in strict mode."""

    plugin: str
    distribution: str | None
    version: str | None
    stage: str  # "import", a hook name, "hooks", or "register"
    error: str
    detail: str = ""  # traceback, shown with --debug
    level: str = "error"  # "warning": shown, but the plugin still counts as ok and strict mode ignores it

    def __str__(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin {self.plugin}{dist}: {self.stage}: {self.error}"


@dataclass
class PluginInfo:
    """What `fico plugins` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    feature_pipelines: list[str] = field(default_factory=list)
    trainers: list[str] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)
    warnings: list[PluginProblem] = field(default_factory=list)
    import_ms: float | None = None  # time to import the entry point's module

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("problems", "warnings"):
            data[key] = [{k: v for k, v in dataclasses.asdict(p).items() if k != "detail"} for p in getattr(self, key)]
        data["ok"] = self.ok
        return data


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class Registry:
    """Loads plugins once and indexes what they register."""

    def __init__(
        self,
        *,
        entry_points: bool = True,
        plugins: Iterable[Any] = (),
        strict: bool | None = None,
        trace: bool | None = None,
    ) -> None:
        self.strict = _truthy("FICO_STRICT_PLUGINS") if strict is None else strict
        self.trace = _truthy("FICO_TRACE_PLUGINS") if trace is None else trace
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.problems: list[PluginProblem] = []
        self.warnings: list[PluginProblem] = []
        # name -> card; a name also registered by another distribution is keyed "dist:name" for the later one
        self.models: dict[str, ModelSpec] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.feature_pipelines: dict[str, FeatureSpec] = {}
        self.trainers: dict[str, TrainerSpec] = {}
        self._model_names: dict[str, str] = {}  # name or alias -> key in self.models (first claimant)
        # name or alias -> every card claiming it, and ("dist", name) -> card, for models and datasets
        self._claims: dict[type, dict[str, list[Any]]] = {ModelSpec: {}, DatasetSpec: {}}
        self._qualified: dict[type, dict[tuple[str, str], Any]] = {ModelSpec: {}, DatasetSpec: {}}
        self._owner: dict[int, PluginInfo] = {}  # id(card) -> the plugin that registered it
        self._factory_checked: dict[str, str | None] = {}  # factory path -> why it does not resolve

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            self._add_plugin(module, name=module_name.rsplit(".", 1)[-1], dist=CORE_DISTRIBUTION, builtin=True)
        for index, plugin in enumerate(plugins):
            name = getattr(plugin, "__name__", None) or f"plugin-{index}"
            self._add_plugin(plugin, name=name, dist=None, builtin=False)
        if entry_points:
            self._load_entry_points()
        for hook in _SPEC_TYPES:
            self._collect(hook)

    # -- loading ---------------------------------------------------------------------------
    def _report_on(self, info: PluginInfo, stage: str, error: str, *, detail: str = "", level: str = "error") -> None:
        """A problem of a plugin already in `infos` (name, distribution and version from `info`)."""
        self._report(PluginProblem(info.name, info.distribution, info.version, stage, error, detail, level))

    def _report(self, problem: PluginProblem) -> None:
        if problem.level == "warning":
            self.warnings.append(problem)
            if problem.plugin in self.infos:
                self.infos[problem.plugin].warnings.append(problem)
            if self.trace:
                print(f"[fico trace] warning: {problem}", file=sys.stderr)
            return
        if self.strict:
            raise PluginError(f"{problem} (FICO_STRICT_PLUGINS is set)")
        self.problems.append(problem)
        info = self.infos.get(problem.plugin)
        if info is not None:
            info.problems.append(problem)
        if self.trace:
            print(f"[fico trace] problem: {problem}", file=sys.stderr)

    def _add_plugin(
        self, plugin: Any, *, name: str, dist: str | None, builtin: bool, version: str | None = None
    ) -> None:
        if version is None and dist == CORE_DISTRIBUTION:
            version = _version(CORE_DISTRIBUTION)
        info = PluginInfo(
            name=name,
            distribution=dist,
            version=version,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            builtin=builtin,
        )
        self.infos[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook signatures here
            self._report(PluginProblem(name, dist, version, "register", _one_line(exc), traceback.format_exc()))
            return
        info.hooks = sorted(
            hook.name
            for hook in self.pm.get_hookcallers(plugin) or []
            if hook.name in hookspecs.__dict__ and not hook.name.startswith("_")
        )
        if not builtin:
            self._check_hooks(plugin, info)

    def _check_hooks(self, plugin: Any, info: PluginInfo) -> None:
        """A misspelled hook or a missing @hookimpl registers nothing: say so instead of showing ok."""
        for mistake in plugin_checks.hook_mistakes(plugin):
            self._report_on(info, "hooks", mistake)
        if not info.hooks:
            example = "@hookimpl def fico_models(register): ..."
            self._report_on(
                info,
                "hooks",
                f"implements no hook, so it registers nothing (expected e.g. `{example}` in {info.module})",
            )

    def _check_import_cost(self, info: PluginInfo, ms: float, heavy: list[str]) -> None:
        info.import_ms = round(ms, 1)
        if heavy:
            self._report_on(
                info,
                "import",
                f"importing {info.module} imports {', '.join(heavy)} ({ms:.0f} ms), which slows down every "
                "`fico` command: import it inside the factory (model.py) instead",
                level="warning",
            )
        elif ms > plugin_checks.slow_import_ms():
            self._report_on(
                info,
                "import",
                f"importing {info.module} takes {ms:.0f} ms (threshold {plugin_checks.slow_import_ms():.0f} ms, "
                "FICO_SLOW_PLUGIN_MS): keep plugin.py to the cards",
                level="warning",
            )

    def _load_entry_points(self) -> None:
        allow_env = os.environ.get("FICO_LOAD_PLUGINS")
        allow = None if allow_env is None else {_normalise(n) for n in allow_env.split(",") if n.strip()}
        deny = {_normalise(n) for n in os.environ.get("FICO_DISABLE_PLUGINS", "").split(",") if n.strip()}
        seen: set[str] = set()
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if (
                allow is not None
                and _normalise(ep.name) not in allow
                and (dist is None or _normalise(dist) not in allow)
            ):
                continue
            if _normalise(ep.name) in deny or (dist is not None and _normalise(dist) in deny):
                continue
            if ep.name in seen or ep.name in self.infos:
                # the same distribution can be visible twice on sys.path (editable + site)
                continue
            seen.add(ep.name)
            modules_before = set(sys.modules)
            started = time.perf_counter()
            try:
                plugin = ep.load()
            except BaseException as exc:  # a plugin must never take the registry down
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.infos[ep.name] = PluginInfo(ep.name, dist, version, ep.value, builtin=False)
                self._report(PluginProblem(ep.name, dist, version, "import", _one_line(exc), traceback.format_exc()))
                continue
            ms = (time.perf_counter() - started) * 1e3
            heavy = plugin_checks.heavy_imports(modules_before, set(sys.modules))
            if self.trace:
                print(
                    f"[fico trace] loaded plugin {ep.name} ({dist} {version}) from {ep.value} in {ms:.1f} ms",
                    file=sys.stderr,
                )
            self._add_plugin(plugin, name=ep.name, dist=dist, builtin=False, version=version)
            self._check_import_cost(self.infos[ep.name], ms, heavy)

    def _collect(self, hook_name: str) -> None:
        spec_type = _SPEC_TYPES[hook_name]
        caller = getattr(self.pm.hook, hook_name)
        # Call each plugin's implementation on its own so one failure cannot hide the others.
        # get_hookimpls() is in registration order (pluggy *calls* them LIFO): built-ins first,
        # then plugins by entry-point name, so a name clash is always won by the earlier one.
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name
            info = self.infos[plugin_name]
            pending: list[Any] = []
            started = time.perf_counter()
            try:
                impl.function(**{arg: pending.append for arg in impl.argnames if arg == "register"})
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._report(
                    PluginProblem(
                        plugin_name, info.distribution, info.version, hook_name, _one_line(exc), traceback.format_exc()
                    )
                )
                continue
            added = [self._accept(spec_type, spec, info, hook_name) for spec in pending]
            if self.trace:
                ms = (time.perf_counter() - started) * 1e3
                names = ", ".join(a for a in added if a) or "nothing"
                print(f"[fico trace] {plugin_name}.{hook_name} registered {names} in {ms:.1f} ms", file=sys.stderr)

    def _accept(self, spec_type: type[Any], spec: Any, info: PluginInfo, hook_name: str) -> str | None:
        if not isinstance(spec, spec_type):
            self._report_on(
                info, hook_name, f"register() expects a {spec_type.__name__}, got {type(spec).__name__}: {spec!r:.120}"
            )
            return None
        if spec.distribution is None and info.distribution is not None:
            spec = dataclasses.replace(spec, distribution=info.distribution)
        path = plugin_checks.factory_path(spec)
        if path and path not in self._factory_checked:  # memo: ~100 open_clip cards share one factory
            self._factory_checked[path] = plugin_checks.missing_module(path)
        missing = self._factory_checked.get(path) if path else None
        if missing is not None:
            field_name = "loader" if spec_type is DatasetSpec else "factory"
            self._report_on(
                info,
                hook_name,
                f"{spec.name}: {field_name} {path!r} does not resolve ({missing}; looked up without importing "
                f"it); {spec.name!r} skipped",
            )
            return None
        if spec_type in self._claims:
            return self._accept_named(spec, info, hook_name)
        tables: dict[type[Any], tuple[dict[str, Any], list[str]]] = {
            FeatureSpec: (self.feature_pipelines, info.feature_pipelines),
            TrainerSpec: (self.trainers, info.trainers),
        }
        table, listed = tables[spec_type]
        if spec.name in table:
            self._report_on(
                info,
                hook_name,
                f"{spec_type.__name__} {spec.name!r} is already registered by {table[spec.name].distribution}; skipped",
            )
            return None
        table[spec.name] = spec
        listed.append(spec.name)
        return spec.name

    def _accept_named(self, spec: Any, info: PluginInfo, hook_name: str) -> str | None:
        """Models and datasets: a name two distributions register is kept for both, flagged on both.

        A plain name then refuses to resolve (AmbiguousModelError); "dist:name" picks one.
        """
        kind = type(spec)
        claims, qualified = self._claims[kind], self._qualified[kind]
        names = spec.names if kind is ModelSpec else (spec.name,)
        owners = _owner_keys(spec, info)
        same_owner = [n for n in names if any((o, n) in qualified for o in owners)]
        if same_owner:
            self._report_on(
                info,
                hook_name,
                f"{kind.__name__} name {same_owner[0]!r} is already registered by "
                f"{info.distribution or info.name}; {spec.name!r} skipped",
            )
            return None
        for name in names:
            for other in claims.get(name, []):
                self._flag_clash(kind, name, spec, info, other, self._owner[id(other)], hook_name)
        table, listed = (self.models, info.models) if kind is ModelSpec else (self.datasets, info.datasets)
        key = spec.name if spec.name not in table else f"{spec.distribution or info.name}:{spec.name}"
        table[key] = spec
        listed.append(spec.name)
        self._owner[id(spec)] = info
        for name in names:
            claims.setdefault(name, []).append(spec)
            for owner in owners:
                qualified[(owner, name)] = spec
            if kind is ModelSpec:
                self._model_names.setdefault(name, key)
        return spec.name

    def _flag_clash(
        self, kind: type, name: str, spec: Any, info: PluginInfo, other: Any, other_info: PluginInfo, hook_name: str
    ) -> None:
        word = "model" if kind is ModelSpec else "dataset"
        mine, theirs = _dist_label(spec, info), _dist_label(other, other_info)
        for who, rival in ((info, theirs), (other_info, mine)):
            self._report(
                PluginProblem(
                    who.name,
                    who.distribution,
                    who.version,
                    hook_name if who is info else "names",
                    f"{word} name {name!r} is also registered by {rival}: the plain name is refused until one is "
                    f"uninstalled or disabled (FICO_DISABLE_PLUGINS); use '{mine}:{name}' or '{theirs}:{name}'",
                )
            )

    def conflicts(self, spec: Any) -> list[str]:
        """The other distributions registering any of this card's names (empty when its names are its own)."""
        kind = type(spec)
        names = spec.names if kind is ModelSpec else (spec.name,)
        others = {
            _dist_label(other, self._owner[id(other)])
            for name in names
            for other in self._claims.get(kind, {}).get(name, [])
            if other is not spec
        }
        return sorted(others)

    def _resolve(self, kind: type, name: str) -> Any:
        unknown: type[UnknownModelError | UnknownDatasetError] = UnknownModelError
        ambiguous: type[AmbiguousModelError | AmbiguousDatasetError] = AmbiguousModelError
        if kind is DatasetSpec:
            unknown, ambiguous = UnknownDatasetError, AmbiguousDatasetError
        claims, qualified = self._claims[kind], self._qualified[kind]
        owner, sep, bare = name.rpartition(":")
        if sep:
            spec = qualified.get((_normalise(owner), bare)) or qualified.get((_normalise(owner), bare.lower()))
            if spec is None:
                raise unknown(name, sorted({f"{o}:{n}" for o, n in qualified}))
            return spec
        found = claims.get(name) or claims.get(name.lower())
        if not found:
            raise unknown(name, claims)
        if len(found) > 1:
            raise ambiguous(found[0].name, [_dist_label(s, self._owner[id(s)]) for s in found])
        return found[0]

    # -- lookups -----------------------------------------------------------------------------
    def model(self, name: str) -> ModelSpec:
        """The card for a name, alias or "distribution:name"; AmbiguousModelError if two distributions claim it."""
        return self._resolve(ModelSpec, name)

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset for a name or "distribution:name"; AmbiguousDatasetError if two distributions claim it."""
        return self._resolve(DatasetSpec, name)

    def owner(self, spec: Any) -> PluginInfo:
        """The plugin that registered this model or dataset card."""
        return self._owner[id(spec)]

    def plugins_of(self, distribution: str) -> list[PluginInfo]:
        """The plugins (entry points) a distribution provides, matched by distribution or entry-point name."""
        wanted = _normalise(distribution)
        return [
            i
            for i in self.infos.values()
            if _normalise(i.name) == wanted or (i.distribution is not None and _normalise(i.distribution) == wanted)
        ]

    def feature_pipeline(self, name: str) -> FeatureSpec | None:
        return self.feature_pipelines.get(name)

    def add_commands(self, cli: object) -> None:
        for impl in reversed(self.pm.hook.fico_commands.get_hookimpls()):
            info = self.infos[impl.plugin_name]
            try:
                impl.function(**{arg: cli for arg in impl.argnames if arg == "cli"})
            except Exception as exc:
                self._report_on(info, "fico_commands", _one_line(exc), detail=traceback.format_exc())


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _owner_keys(spec: Any, info: PluginInfo) -> set[str]:
    """What may stand before the ':' of a qualified name: the distribution or the entry-point name."""
    keys = {_normalise(info.name)}
    for dist in (spec.distribution, info.distribution):
        if dist:
            keys.add(_normalise(dist))
    return keys


def _dist_label(spec: Any, info: PluginInfo) -> str:
    return spec.distribution or info.distribution or info.name


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_registry: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = Registry()
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in a running process)."""
    global _registry
    _registry = registry


def list_models(family: str | None = None, output: str | None = None) -> list[ModelSpec]:
    """Every registered model card, sorted by name; optionally filtered by family / output kind."""
    specs = sorted(get_registry().models.values(), key=lambda s: s.name)
    if family is not None:
        specs = [s for s in specs if str(s.family) == family.lower()]
    if output is not None:
        specs = [s for s in specs if str(s.output) == output.lower()]
    return specs


def get_model_spec(name: str) -> ModelSpec:
    """The model card registered under `name` (or an alias); UnknownModelError if none."""
    return get_registry().model(name)


def list_datasets() -> list[DatasetSpec]:
    return sorted(get_registry().datasets.values(), key=lambda s: s.name)


def get_dataset_spec(name: str) -> DatasetSpec:
    return get_registry().dataset(name)


def list_feature_pipelines() -> list[FeatureSpec]:
    return sorted(get_registry().feature_pipelines.values(), key=lambda s: s.name)


def list_trainers() -> list[TrainerSpec]:
    return sorted(get_registry().trainers.values(), key=lambda s: s.model)


def get_trainer_spec(model: str) -> TrainerSpec:
    """The training recipe for `model` (any of its names); PluginError if none is registered."""
    registry = get_registry()
    canonical = registry.model(model).name
    spec = registry.trainers.get(canonical)
    if spec is None:
        have = ", ".join(sorted(registry.trainers)) or "none"
        raise PluginError(f"no training recipe is registered for {canonical!r} (recipes: {have})")
    return spec


def plugins() -> list[PluginInfo]:
    """Every plugin seen, built-ins first, with what it registered and any problems."""
    infos = list(get_registry().infos.values())
    return sorted(infos, key=lambda i: (not i.builtin, i.name))


def resolve_callable(path: str) -> Callable[..., Any]:
    """Import 'package.module:attr.attr' lazily (model factories, dataset loaders)."""
    module_name, _, attr_path = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj
