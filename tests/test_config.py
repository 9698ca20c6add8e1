from __future__ import annotations

import json

import pytest

from bertfit.config import RunConfig, config_names, load_config, parse_label_map, save_config
from bertfit.errors import ConfigError


def test_overrides_apply_to_the_right_section_and_skip_none():
    cfg = RunConfig().override({"epochs": "2", "text_cols": "body", "model": "x", "lr": None})
    assert cfg.train.epochs == 2.0 and cfg.data.text_cols == ["body"] and cfg.model.model == "x"
    assert cfg.train.lr == RunConfig().train.lr
    assert RunConfig().train.epochs is None  # the original is untouched (None: training resolves it, default_epochs)


def test_yaml_nested_and_flat_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochs: 5\n  scheduler: exponential\nlabel_col: y\nlabel_map: '1=neg,2=pos'\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.scheduler, cfg.data.label_col) == (5.0, "exponential", "y")
    assert cfg.data.label_map == {"1": "neg", "2": "pos"}


def test_config_names_lists_every_setting_a_file_names_flat_or_in_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1.0e-4\ntrain: {weight_decay: 0.01, epochs: 3}\ndata: {max_length: 64}\n")
    assert sorted(config_names(path)) == ["epochs", "lr", "max_length", "weight_decay"]
    (tmp_path / "c.json").write_text(json.dumps({"model": {"model": "x"}, "seed": 3}))
    assert sorted(config_names(tmp_path / "c.json")) == ["model", "seed"]
    with pytest.raises(ConfigError, match="config file not found"):
        config_names(tmp_path / "missing.yaml")


def test_save_and_load_round_trip(tmp_path):
    cfg = RunConfig().override({"epochs": 7, "text_cols": ["a", "b"], "grad_accum": 2})
    for name in ("c.json", "c.yaml"):
        save_config(cfg, tmp_path / name)
        assert load_config(tmp_path / name) == cfg


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"epocs": 3}, "unknown setting 'epocs'"),
        ({"batch_size": "big"}, "must be a int"),
        ({"scheduler": "cosine"}, "scheduler must be one of"),
        ({"val_fraction": 1.5}, "val_fraction must be between"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, raw, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path).validate()
    assert "\n" not in str(info.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(path)


def test_label_map_parsing():
    assert parse_label_map("1=negative, 2=positive") == {"1": "negative", "2": "positive"}
    with pytest.raises(ConfigError, match="RAW=NAME"):
        parse_label_map("1:negative")


def test_values_follow_the_field_types_and_section_names_pick_one_section():
    cfg = RunConfig().override({"train.lr": "1e-4", "stride": "16", "data.allow_pickle": "yes", "max_steps": 7.0})
    assert (cfg.train.lr, cfg.data.stride, cfg.train.max_steps) == (1e-4, 16, 7)
    assert cfg.data.allow_pickle is True and cfg.model.allow_pickle is False
    assert RunConfig().override({"allow_pickle": True}).model.allow_pickle is True  # a flat name: both sections
    assert RunConfig().override({"columns": "label,text"}).data.columns == ["label", "text"]
    for bad, message in [({"train.stride": 3}, "unknown setting 'train.stride'"), ({"lr": "fast"}, "must be a float")]:
        with pytest.raises(ConfigError, match=message):
            RunConfig().override(bad)
