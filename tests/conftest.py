"""Shared fixtures: a tiny random-weight BERT with a real WordPiece tokenizer, and small learnable data."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSITIVE = ["good", "great", "love", "happy", "excellent", "wonderful", "fun", "nice"]
NEGATIVE = ["bad", "awful", "hate", "sad", "terrible", "boring", "poor", "ugly"]
FILLER = [
    "the",
    "movie",
    "was",
    "really",
    "a",
    "film",
    "this",
    "i",
    "it",
    "very",
    "and",
    "story",
    "plot",
    "so",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentiment_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Short texts whose label is set by one sentiment word among filler words: learnable in seconds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session", autouse=True)
def _token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tokenized training data goes to a temporary cache, not the user's ~/.cache (subprocesses inherit it)."""
    old = os.environ.get("BERTFIT_CACHE")
    os.environ["BERTFIT_CACHE"] = str(tmp_path_factory.mktemp("token-cache"))
    yield
    if old is None:
        os.environ.pop("BERTFIT_CACHE", None)
    else:
        os.environ["BERTFIT_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a WordPiece tokenizer, saved as a local model folder."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab_list = SPECIAL + POSITIVE + NEGATIVE + FILLER + letters + [f"##{c}" for c in letters]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # as BERT's own tokenizers declare
    )
    ids = fast("great movie")["input_ids"]
    assert vocab["[UNK]"] not in ids and ids[0] == vocab["[CLS]"], "known words must not encode to [UNK]"
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentiment_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return sentiment_frame(320, seed=1), sentiment_frame(80, seed=2)


TINY_TRAIN = {"epochs": 4, "lr": 3e-3, "batch_size": 16, "warmup": 0.0}


@pytest.fixture(scope="session")
def tiny_trained(tiny_model_dir: Path, sentiment_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model fine-tuned on the sentiment data, shared by tests that only read it."""
    import bertfit

    train_df, val_df = sentiment_data
    out = tmp_path_factory.mktemp("trained") / "model"
    bertfit.train(train_df, out, validation=val_df, model=str(tiny_model_dir), progress=False, **TINY_TRAIN)
    return out


@pytest.fixture
def restore_cli_state() -> Iterator[None]:
    """The CLI points the 'bertfit' logger at the runner's (soon closed) stderr; restore it afterwards."""
    from bertfit import cli

    logger = logging.getLogger("bertfit")
    saved = (list(logger.handlers), logger.level, logger.propagate, dict(cli.state))
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    cli.state.update(saved[3])
