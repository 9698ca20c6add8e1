"""Command options made from the run configuration's fields, and `--set section.key=value` for every field.

A setting is defined once, as a field of DataConfig, ModelConfig or TrainConfig (type, default, help); a command
that takes settings declares a `settings` parameter and `with_settings` puts one option per field in its place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer
import yaml

from bertfit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, field_type
from bertfit.errors import ConfigError

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="SECTION.KEY=VALUE",
        help="Any setting of a config file, e.g. train.lr=1e-4 or train.eval_batch_size=64 (lists: "
        "data.text_cols=[title,body]); repeat for several. Options beat it, it beats --config.",
    ),
]


def config_fields() -> list[tuple[type, dataclasses.Field[Any]]]:
    """Every (section class, field) of a RunConfig, in section order."""
    return [(cls, f) for cls in SECTIONS.values() for f in dataclasses.fields(cls)]


def help_of(name: str) -> str:
    """The help text of the first field called `name` (data, model, train)."""
    return next(f.metadata["help"] for _, f in config_fields() if f.name == name)


def option_fields(names: Iterable[str] | None = None) -> list[tuple[type, dataclasses.Field[Any]]]:
    """Fields with an option of their own, once per name (a flat option sets every section's field of that name)."""
    wanted = None if names is None else set(names)
    chosen: dict[str, tuple[type, dataclasses.Field[Any]]] = {}
    for cls, f in config_fields():
        if f.metadata.get("cli") and f.name not in chosen and (wanted is None or f.name in wanted):
            chosen[f.name] = (cls, f)
    return list(chosen.values())


def option_parameter(cls: type, f: dataclasses.Field[Any], help: str | None = None) -> inspect.Parameter:
    """The typer option of a field: given or not (None, False: the config's value stands), typed as the field."""
    decls = [f.metadata["option"]] if f.metadata.get("option") else []
    info = typer.Option(*decls, help=help or f.metadata["help"])
    kind = str if f.metadata.get("parse") else field_type(cls, f.name)  # parsed from text, e.g. '1=neg,2=pos'
    default, annotation = (False, Annotated[bool, info]) if kind is bool else (None, Annotated[kind | None, info])
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_settings(names: Iterable[str] | None = None, helps: dict[str, str] | None = None) -> Callable[..., Any]:
    """Replace a command's `settings` parameter by one option per config field (or the named ones, with their own
    help where `helps` has one); the command receives them as `settings`, a dict of library overrides."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        generated = [option_parameter(cls, f, (helps or {}).get(f.name)) for cls, f in option_fields(names)]
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        at = [p.name for p in own].index("settings")
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in [*own[:at], *generated, *own[at + 1 :]]]

        @functools.wraps(command)
        def wrapper(**values: Any) -> Any:
            settings = {p.name: _given(values.pop(p.name)) for p in generated}
            return command(settings=settings, **values)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _given(value: Any) -> Any:
    """An option's value as a library override: None (the config's value stands) for an unset flag or list."""
    return None if value is False or (isinstance(value, list | tuple) and not value) else value


def apply_sets(config: RunConfig, items: list[str] | None) -> RunConfig:
    """The config with each `section.key=value` of --set applied; a one-line ConfigError for a bad one."""
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes section.key=value, e.g. --set train.lr=1e-4 (got '{item}')")
        try:
            value = yaml.safe_load(text) if text.lstrip()[:1] in ("[", "{") else text  # a list or a mapping
            config = config.override({key.strip(): value})
        except (ConfigError, yaml.YAMLError) as err:
            raise ConfigError(f"--set {item}: {str(err).splitlines()[0]}") from None
    return config
