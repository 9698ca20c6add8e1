from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from bertfit.config import ModelConfig
from bertfit.errors import ConfigError, ModelError
from bertfit.labels import LabelSchema
from bertfit.modeling import DEFAULT_MODEL, load_pretrained, load_trained, pick_precision, resolve_model
from bertfit.tokenization import load_tokenizer, usable_max_length


def test_default_model_is_the_bundled_minilm():
    source, name = resolve_model(None)
    assert name == DEFAULT_MODEL
    config = AutoConfig.from_pretrained(source)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 384, 6)


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no model folder there"):
        resolve_model(str(tmp_path / "nope"))


def test_hub_ids_are_passed_through_to_from_pretrained():
    assert resolve_model("bert-base-uncased") == ("bert-base-uncased", "bert-base-uncased")


def test_unreachable_hub_id_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot load from the hub") as info:
        load_pretrained(ModelConfig(model="someone/not-a-real-model"), LabelSchema(["a", "b"]))
    assert "\n" not in str(info.value)


def test_pickle_weights_need_allow_pickle(tiny_model_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    schema = LabelSchema(["a", "b"])
    with pytest.raises(ModelError, match=r"only a pickle checkpoint \(pytorch_model\.bin\).*pass --allow-pickle"):
        load_pretrained(ModelConfig(model=str(folder)), schema)
    model, _, _ = load_pretrained(ModelConfig(model=str(folder), allow_pickle=True), schema)
    assert model.config.num_labels == 2


def test_trained_pickle_weights_need_allow_pickle(tiny_trained, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_trained, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"pickle checkpoint .*run code.*--allow-pickle.*safetensors") as info:
        load_trained(folder)
    assert "\n" not in str(info.value)
    model, meta = load_trained(folder, allow_pickle=True)
    expected, _ = load_trained(tiny_trained)
    assert meta["labels"]["names"] == ["negative", "positive"]
    for name, tensor in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_max_length_is_clamped_to_the_model(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert usable_max_length(1000, tokenizer, config) == 128
    assert usable_max_length(64, tokenizer, config) == 64


def test_precision_choice():
    assert pick_precision("fp32") == "fp32"
    assert pick_precision("auto", device="cpu") in ("bf16", "fp32")
    with pytest.raises(ConfigError, match="precision must be one of"):
        pick_precision("fp8")
