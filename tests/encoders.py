"""Tiny random-weight encoders of the architectures users bring, each with its own kind of tokenizer, built from local
configs (no hub): RoBERTa and ModernBERT (byte-level BPE, no token_type_ids), XLM-R (SentencePiece-style Unigram,
no token_type_ids), DeBERTa-v2/v3 (Unigram, relative positions), DistilBERT (WordPiece, no token_type_ids) and
ELECTRA (WordPiece, embeddings narrower than the hidden layers).

The tokenizers are trained here on the words of the tests' sentiment texts (`tokenizers` trainers), so that every
word the tests use has its own tokens, and saved with the special tokens and pair templates of the real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModel, PreTrainedTokenizerFast

ARCHITECTURES = ("roberta", "xlm-roberta", "deberta-v2", "modernbert", "distilbert", "electra")
SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
POSITIONS = 128  # tokens the models take (RoBERTa-style position ids start after the pad id: 2 more positions)


def build_encoder(arch: str, folder: Path, corpus: list[str]) -> Path:
    """Write a model folder of `arch` (random weights, tokenizer trained on `corpus`) and return it."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(arch, corpus)
    tokenizer.save_pretrained(folder)
    AutoModel.from_config(_config(arch, tokenizer)).save_pretrained(folder)
    return folder


def _tokenizer(arch: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    if arch in ("roberta", "modernbert"):
        return _byte_level_bpe(corpus, modernbert=arch == "modernbert")
    if arch in ("xlm-roberta", "deberta-v2"):
        return _unigram(corpus, deberta=arch == "deberta-v2")
    return _wordpiece(corpus, token_types=arch == "electra")


def _byte_level_bpe(corpus: list[str], modernbert: bool) -> PreTrainedTokenizerFast:
    """RoBERTa's shape: <s> A </s></s> B </s>, no token_type_ids (ModernBERT: [CLS] A [SEP] B [SEP])."""
    special = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"] if modernbert else ["<s>", "<pad>", "</s>", "<unk>",
                                                                                 "<mask>"]  # fmt: skip
    bos, pad, eos, unk, mask = special
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, initial_alphabet=alphabet)
    tok.train_from_iterator(corpus, trainer)
    ids = {t: tok.token_to_id(t) for t in special}
    if modernbert:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B {eos}", special_tokens=[(bos, ids[bos]), (eos, ids[eos])]
        )
    else:
        tok.post_processor = processors.RobertaProcessing((eos, ids[eos]), (bos, ids[bos]), add_prefix_space=False)
    return _wrap(tok, bos, pad, eos, unk, mask, token_types=False)


def _unigram(corpus: list[str], deberta: bool) -> PreTrainedTokenizerFast:
    """SentencePiece-style: Metaspace words, a Unigram model. XLM-R: <s> A </s></s> B </s>, no token_type_ids;
    DeBERTa-v2/v3: [CLS] A [SEP] B [SEP] with token_type_ids."""
    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] if deberta else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    pad, bos, eos, unk, mask = special if deberta else (special[1], special[0], special[2], special[3], special[4])
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()] if deberta else
                                          [normalizers.NFKC()])  # fmt: skip
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=300, special_tokens=special, unk_token=unk))
    ids = {t: tok.token_to_id(t) for t in special}
    pair = f"{bos} $A {eos} $B:1 {eos}:1" if deberta else f"{bos} $A {eos} {eos} $B {eos}"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=pair, special_tokens=[(bos, ids[bos]), (eos, ids[eos])]
    )
    return _wrap(tok, bos, pad, eos, unk, mask, token_types=deberta)


def _wordpiece(corpus: list[str], token_types: bool) -> PreTrainedTokenizerFast:
    """BERT's shape ([CLS] A [SEP] B [SEP]); DistilBERT declares no token_type_ids, ELECTRA does."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return _wrap(tok, "[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]", token_types=token_types)


def _wrap(tok: Tokenizer, bos: str, pad: str, eos: str, unk: str, mask: str, token_types: bool) -> Any:
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos, pad_token=pad,
        unk_token=unk, mask_token=mask, model_max_length=POSITIONS, model_input_names=names,
    )  # fmt: skip


def _config(arch: str, tok: PreTrainedTokenizerFast) -> Any:
    from transformers import AutoConfig

    ids = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
           "eos_token_id": tok.eos_token_id}  # fmt: skip
    if arch in ("roberta", "xlm-roberta"):
        return AutoConfig.for_model(arch, **SIZE, **ids, max_position_embeddings=POSITIONS + 2, type_vocab_size=1)
    if arch == "deberta-v2":
        return AutoConfig.for_model(arch, **SIZE, **ids, max_position_embeddings=POSITIONS, type_vocab_size=0,
                                    relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
                                    position_biased_input=False)  # fmt: skip
    if arch == "modernbert":
        return AutoConfig.for_model(arch, **SIZE, **ids, max_position_embeddings=POSITIONS,
                                    cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
                                    global_attn_every_n_layers=2, local_attention=16)  # fmt: skip
    if arch == "distilbert":
        return AutoConfig.for_model(arch, vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                    max_position_embeddings=POSITIONS, pad_token_id=tok.pad_token_id)  # fmt: skip
    return AutoConfig.for_model(arch, **SIZE, **ids, embedding_size=16, max_position_embeddings=POSITIONS)
