"""Every field of DataConfig, ModelConfig and TrainConfig reaches the RunConfig that `bertfit train` hands the library:
from its option (where it has one), from --set section.key=value and from a YAML --config file. No training: the
library call is replaced by one that records what it was given."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from bertfit.cli import app
from bertfit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, field_type

pytestmark = pytest.mark.usefixtures("restore_cli_state")

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
IDS = [f"{section}.{f.name}" for section, f in FIELDS]
runner = CliRunner()


def sample(section: str, f: dataclasses.Field[Any]) -> tuple[str, Any]:
    """A value other than the default, as written on the command line, and as the config then holds it."""
    kind, default = field_type(SECTIONS[section], f.name), getattr(SECTIONS[section](), f.name)
    if f.name == "label_map":
        return "1=one,2=two", {"1": "one", "2": "two"}
    if f.name == "columns":
        return "label,text", ["label", "text"]
    if kind is bool:
        return str(not default).lower(), not default
    if kind is int:
        value = 5 if default is None else default + 3
        return str(value), value
    if kind is float:
        value = 0.05 if default is None else default / 2
        return str(value), value
    if typing.get_origin(kind) is list:
        return "[title, body]", ["title", "body"]
    return "other", "other"


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[RunConfig]:
    """The RunConfig each `bertfit train` would train with: the config it passes, with its overrides applied.
    (The command names a missing data file before it imports the training code: data.csv must exist.)"""
    (tmp_path / "data.csv").write_text("text,label\n")
    configs: list[RunConfig] = []

    def fake_train(train_data: Any, output_dir: Any, validation: Any = None, config: Any = None, **kw: Any) -> Any:
        known = ("overwrite", "progress", "cache_dir", "resume", "check")
        configs.append(config.override({k: v for k, v in kw.items() if k not in known}))
        metrics = {"accuracy": 1.0}
        return SimpleNamespace(model_dir=output_dir, train_rows=1, val_rows=1, train_seconds=0.0,
                               resumed_from_step=None, labels=["a", "b"], metrics=metrics)  # fmt: skip

    monkeypatch.setattr("bertfit.training.run.train", fake_train)
    return configs


def train(tmp_path: Path, *args: str) -> Any:
    result = runner.invoke(app, ["train", str(tmp_path / "data.csv"), "-o", str(tmp_path / "model"), "--json", *args])
    assert result.exit_code == 0, result.output
    return result


def changed(config: RunConfig, section: str, name: str, expected: Any) -> None:
    """`section.name` holds the expected value, and nothing else differs from the defaults but that name."""
    assert getattr(getattr(config, section), name) == expected
    for other, f in FIELDS:
        if f.name != name:
            assert getattr(getattr(config, other), f.name) == getattr(SECTIONS[other](), f.name), (other, f.name)


@pytest.mark.parametrize(("section", "f"), FIELDS, ids=IDS)
def test_every_field_is_reachable_with_set(tmp_path: Path, received: list[RunConfig], section: str, f: Any) -> None:
    text, expected = sample(section, f)
    train(tmp_path, "--set", f"{section}.{f.name}={text}")
    changed(received[-1], section, f.name, expected)
    if f.name == "allow_pickle":  # a section's setting alone, where another section has a field of that name
        assert getattr(received[-1], "model" if section == "data" else "data").allow_pickle is False


@pytest.mark.parametrize(("section", "f"), FIELDS, ids=IDS)
def test_every_field_is_reachable_from_yaml(tmp_path: Path, received: list[RunConfig], section: str, f: Any) -> None:
    text, expected = sample(section, f)
    value = text if f.metadata.get("parse") else expected
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({section: {f.name: value}}), encoding="utf-8")
    train(tmp_path, "--config", str(tmp_path / "run.yaml"))
    assert getattr(getattr(received[-1], section), f.name) == expected


def option_of(name: str) -> Any:
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    return next((p for p in command.params if p.name == name), None)


@pytest.mark.parametrize(("section", "f"), FIELDS, ids=IDS)
def test_every_option_reaches_its_field(tmp_path: Path, received: list[RunConfig], section: str, f: Any) -> None:
    option = option_of(f.name)
    if option is None:
        assert not f.metadata["cli"] or f.name == "allow_pickle", f"{f.name} has no option of its own"
        return
    text, expected = sample(section, f)
    if option.is_flag:
        args = [option.opts[0]]
    elif option.multiple:
        args = [arg for value in expected for arg in (option.opts[0], value)]
    else:
        args = [option.opts[0], text]
    train(tmp_path, *args)
    assert getattr(getattr(received[-1], section), f.name) == expected


def test_options_beat_set_and_set_beats_the_config_file(tmp_path: Path, received: list[RunConfig]) -> None:
    (tmp_path / "run.yaml").write_text("train:\n  epochs: 5\n  seed: 7\n  lr: 0.001\n", encoding="utf-8")
    train(
        tmp_path, "--config", str(tmp_path / "run.yaml"), "--set", "train.epochs=4", "--set", "lr=2e-3", "--seed", "8"
    )
    assert (received[-1].train.epochs, received[-1].train.seed, received[-1].train.lr) == (4.0, 8, 2e-3)


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("train.lrr=1e-4", "--set train.lrr=1e-4: unknown setting 'train.lrr'"),
        ("optim.lr=1e-4", "unknown setting 'optim.lr'"),
        ("train.epochs=many", "setting 'epochs' must be a float (got 'many')"),
        ("data.max_length=1.5", "setting 'max_length' must be a int"),
        ("data.text_cols=[a, b", "--set data.text_cols=[a, b:"),
        ("train.lr", "--set takes section.key=value"),
        ("=3", "--set takes section.key=value"),
    ],
)
def test_a_bad_set_is_a_one_line_error(tmp_path: Path, received: list[RunConfig], item: str, fragment: str) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "data.csv"), "-o", str(tmp_path / "model"), "--set", item])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output and received == []
