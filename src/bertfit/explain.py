"""Token attributions: which words pushed a text towards a label, by Integrated Gradients (captum).

Method: captum's `LayerIntegratedGradients` on the model's word-embedding layer (`model.get_input_embeddings()`),
explaining the centred logit of one label: its logit minus the mean logit over all labels. Softmax ignores a shift
shared by all labels, so training never constrains that shift and a raw logit carries it as noise; with two labels
the centred logit is half the log-odds.

The baseline is the same token sequence with every word piece replaced by [PAD] (the tokenizer's pad id), keeping
[CLS], [SEP] and the other special tokens, the attention mask and the positions. So the special tokens get exactly
zero attribution, and the attributions of a text's word pieces add up to logit(text) - logit(baseline) (centred
logits) up to the approximation error of the integral (`delta`, which shrinks as `n_steps` grows). The pieces of a
word are summed into one attribution per word (the fast tokenizer's word ids), and each word keeps its character
span in the text, so it shows as written (original casing and accents).

Attributions run in fp32: in bf16 the gradients are too coarse for the sums to add up.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.style import Style
from rich.text import Text
from tqdm.auto import tqdm

from bertfit.data.io import PLAIN, ReadOptions, read_table
from bertfit.data.paths import check_not_input, model_files
from bertfit.data.rows import clean_text, join_text
from bertfit.data.write import atomic_path, check_writable
from bertfit.errors import ConfigError, DataError, MissingDependency, ModelError
from bertfit.prediction.decoder import Decoder
from bertfit.prediction.loading import build_parts, input_columns, load_weights
from bertfit.prediction.scorer import Scorer
from bertfit.templates import render_html as render_template

logger = logging.getLogger(__name__)

TEXTS_PER_CALL = 8  # texts attributed together (each is expanded n_steps times inside captum)
TOKENS_PER_FORWARD = 8192  # padded tokens per forward+backward pass when internal_batch_size is not given
POSITIVE_RGB = (22, 163, 74)
NEGATIVE_RGB = (220, 38, 38)


@dataclass
class Explanation:
    """Word attributions of one text for one label.

    Attributes:
        text: the text explained.
        label: the label explained (the predicted one unless another was asked for).
        score: the model's probability of `label` for this text.
        predicted: the model's predicted label.
        words: the words, as written in `text`.
        spans: (start, end) character offsets of each word in `text`.
        attributions: one number per word: how much it raised (> 0) or lowered (< 0) the centred logit of `label`,
            the sum of its word pieces' attributions.
        delta: captum's convergence delta, sum of all attributions - logit_diff (near 0 when the integral
            is well approximated).
        logit_diff: the centred logit of `label` (its logit minus the mean over labels) for the text minus that
            for the baseline ([PAD] in place of every word piece).
    """

    text: str
    label: str
    score: float
    predicted: str
    words: list[str]
    spans: list[tuple[int, int]]
    attributions: list[float]
    delta: float
    logit_diff: float

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k words with the largest attributions, largest first."""
        order = sorted(range(len(self.words)), key=lambda i: -self.attributions[i])
        return [(self.words[i], self.attributions[i]) for i in order[:k]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spans"] = [list(span) for span in self.spans]
        return data


def explain(
    model_dir: str | Path,
    texts: Sequence[str] | None = None,
    input_path: str | Path | None = None,
    text_cols: list[str] | None = None,
    label: str | None = None,
    n_steps: int = 50,
    output: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    read: ReadOptions | None = None,
) -> list[Explanation]:
    """Explain the texts given, or every non-empty row of a table, with a model folder loaded in fp32.

    Args:
        texts: texts to explain; or give `input_path` (a table) and optionally `text_cols`.
        label: the label to explain (default: each text's predicted label).
        output: also write the explanations as one self-contained HTML file (complete, or not at all).
        read: how to read `input_path` (headerless columns, quoting, encoding); see `io.ReadOptions`.
    """
    if (texts is None) == (input_path is None):
        raise ConfigError("give texts to explain or an input file (--input), not both and not neither")
    if output is not None:
        check_not_input(output, [input_path, *model_files(model_dir)], "--output file")
        check_writable(output, (".html", ".htm"))
    # A bad input fails before the model loads.
    frame = read_table(input_path, opts=read or PLAIN) if input_path is not None else None
    load_captum()
    model, tokenizer, meta, device, dtype = load_weights(model_dir, device, "fp32")
    scorer, decoder = build_parts(model, tokenizer, meta, device, dtype)
    model_text_cols, pair_col = input_columns(meta)
    if frame is not None:
        texts = _table_texts(frame, str(input_path), text_cols or model_text_cols)
    explanations = explain_parts(scorer, decoder, pair_col, texts, label=label, n_steps=n_steps, progress=progress)
    if output is not None:
        write_html(explanations, output)
    return explanations


def explain_parts(
    scorer: Scorer,
    decoder: Decoder,
    pair_col: str | None,
    texts: Sequence[str] | pd.Series,
    label: str | None = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    progress: bool = False,
) -> list[Explanation]:
    """`Classifier.explain`: `explain_texts` with a loaded model's scorer (model, tokenizer, max_length) and
    decoder (labels, temperature); single-label, single-text models without sliding windows only."""
    if decoder.schema.multi_label or pair_col or scorer.long == "sliding":
        kind = "multi-label" if decoder.schema.multi_label else "pair" if pair_col else "sliding-window"
        raise ConfigError(f"explain works with single-label, single-text models; this is a {kind} model")
    return explain_texts(scorer.model, scorer.tokenizer, decoder.labels, texts, label, n_steps, internal_batch_size,
                         scorer.max_length, progress, temperature=decoder.temperature)  # fmt: skip


def explain_texts(
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    texts: Sequence[str] | pd.Series,
    label: str | None = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    max_length: int = 512,
    progress: bool = False,
    temperature: float = 1.0,
) -> list[Explanation]:
    """Word attributions for each text (see the module docstring for the method); texts keep their order.

    Args:
        model: a sequence-classification model; one in bf16 or fp16 is explained through an fp32 copy of it.
        internal_batch_size: sequences per forward+backward pass inside captum (default: about 8192 padded
            tokens' worth); lower it to save memory. The result does not depend on it.
        temperature: the calibration temperature the scores are computed with (the attributions explain the
            logits before it is applied).
    """
    texts = _checked_texts(texts)
    if n_steps < 1:
        raise ConfigError(f"n_steps must be at least 1 (got {n_steps}); try 50")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ConfigError(f"internal_batch_size must be at least 1 (got {internal_batch_size}); leave it out")
    target = _label_id(label, labels)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("explaining needs a fast tokenizer (for word ids and offsets); this model has none")
    lig_class = load_captum()
    model = _fp32(model)
    lig = lig_class(_centred_logits(model), model.get_input_embeddings())
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")  # similar lengths together
    explained: list[Explanation | None] = [None] * len(texts)
    bar = tqdm(total=len(texts), desc="explain", unit=" texts", disable=not progress, file=sys.stderr)
    for start in range(0, len(order), TEXTS_PER_CALL):
        rows = order[start : start + TEXTS_PER_CALL].tolist()
        batch = _explain_batch(model, lig, tokenizer, encoded, rows, target, n_steps, internal_batch_size)
        for row, result in zip(rows, _explanations(batch, rows, encoded, texts, labels, temperature)):
            explained[row] = result
        bar.update(len(rows))
    bar.close()
    return explained  # type: ignore[return-value]


def _explain_batch(
    model: Any,
    lig: Any,
    tokenizer: Any,
    encoded: Any,
    rows: list[int],
    target: int | None,
    n_steps: int,
    internal_batch_size: int | None,
) -> dict[str, Any]:
    """Logits of the texts and of their baselines, the explained label ids, token attributions and deltas."""
    device = next(model.parameters()).device
    ids, mask, baseline = (t.to(device) for t in _padded(tokenizer, encoded, rows))
    forward = _centred_logits(model)
    with torch.no_grad():
        logits, base_logits = forward(ids, mask), forward(baseline, mask)
    targets = logits.argmax(dim=-1) if target is None else torch.full((len(rows),), target, device=device)
    per_pass = internal_batch_size or max(2 * len(rows), TOKENS_PER_FORWARD // ids.shape[1])
    token_attr, delta = lig.attribute(inputs=ids, baselines=baseline, additional_forward_args=(mask,),
                                      target=targets.tolist(), n_steps=n_steps, internal_batch_size=per_pass,
                                      return_convergence_delta=True)  # fmt: skip
    return {
        "logits": logits.cpu(),
        "base_logits": base_logits.cpu(),
        "targets": targets.cpu().tolist(),
        "token_attr": token_attr.sum(dim=-1).detach().cpu().numpy(),  # (rows, tokens): summed over hidden units
        "delta": delta.detach().cpu().tolist(),
    }


def _explanations(
    batch: dict[str, Any], rows: list[int], encoded: Any, texts: list[str], labels: Sequence[str], temperature: float
) -> list[Explanation]:
    logits, base_logits = batch["logits"], batch["base_logits"]
    proba = torch.softmax(logits / temperature, dim=-1)
    results = []
    for i, (row, t) in enumerate(zip(rows, batch["targets"])):
        words, spans, attributions = merge_word_pieces(
            texts[row], encoded.word_ids(row), encoded["offset_mapping"][row], batch["token_attr"][i]
        )
        results.append(
            Explanation(
                text=texts[row],
                label=labels[t],
                score=float(proba[i, t]),
                predicted=labels[int(logits[i].argmax())],
                words=words,
                spans=spans,
                attributions=attributions,
                delta=float(batch["delta"][i]),
                logit_diff=float(logits[i, t] - base_logits[i, t]),
            )
        )
    return results


def merge_word_pieces(
    text: str, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]], token_attr: Sequence[float]
) -> tuple[list[str], list[tuple[int, int]], list[float]]:
    """(words as written in `text`, their character spans, their attributions: the sum over their pieces).

    Special tokens and padding (word id None) are left out; they carry no attribution against this baseline.
    """
    spans: dict[int, list[int]] = {}
    sums: dict[int, float] = {}
    for word, (start, end), value in zip(word_ids, offsets, token_attr):
        if word is None:
            continue
        if word in spans:
            spans[word] = [min(spans[word][0], start), max(spans[word][1], end)]
        else:
            spans[word] = [start, end]
        sums[word] = sums.get(word, 0.0) + float(value)
    words, char_spans, attributions = [], [], []
    for word, (start, end) in spans.items():
        # Byte-level and SentencePiece tokenizers may count the space before a word as part of it.
        while start < end and text[start].isspace():
            start += 1
        words.append(text[start:end])
        char_spans.append((start, end))
        attributions.append(sums[word])
    return words, char_spans, attributions


def load_captum() -> Any:
    """captum's LayerIntegratedGradients, or MissingDependency with the install hint."""
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise MissingDependency("captum", "explain", "Explaining predictions (token attributions)") from None
    return LayerIntegratedGradients


# -- rendering -----------------------------------------------------------------------------------------------------


def shade(value: float, scale: float) -> tuple[int, int, int]:
    """White blended towards green (value > 0) or red (value < 0) by |value| / scale."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    full = POSITIVE_RGB if value > 0 else NEGATIVE_RGB
    return tuple(round(255 + (c - 255) * strength) for c in full)  # type: ignore[return-value]


def to_rich(explanation: Explanation) -> Text:
    """The text with each word on a background shaded by its attribution (scaled to the text's largest)."""
    scale = max((abs(a) for a in explanation.attributions), default=0.0)
    out, last = Text(), 0
    for (start, end), value in zip(explanation.spans, explanation.attributions):
        out.append(explanation.text[last:start])
        style = Style(color="black", bgcolor=f"rgb{shade(value, scale)}")
        out.append(explanation.text[start:end], style=style)
        last = end
    out.append(explanation.text[last:])
    return out


def render_html(explanations: Sequence[Explanation]) -> str:
    """One self-contained HTML page (templates/explain.html): each text with its words shaded by attribution, its
    label and score."""
    sections = [_html_section(e) for e in explanations]
    page = render_template("explain.html", sections=sections, positive=_css(shade(1, 1)), negative=_css(shade(-1, 1)))
    return page.strip()


def write_html(explanations: Sequence[Explanation], path: str | Path) -> None:
    """Write `render_html` to `path`; the file appears only once complete."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(render_html(explanations) + "\n", encoding="utf-8")


def _html_section(e: Explanation) -> dict[str, Any]:
    """What the page shows of one explanation: each word with the text before it, its shade and attribution."""
    scale = max((abs(a) for a in e.attributions), default=0.0)
    words, last = [], 0
    for (start, end), value in zip(e.spans, e.attributions):
        words.append((e.text[last:start], e.text[start:end], _css(shade(value, scale)), value))
        last = end
    return {"label": e.label, "score": e.score, "predicted": e.predicted, "words": words, "tail": e.text[last:],
            "total": sum(e.attributions), "logit_diff": e.logit_diff, "delta": e.delta}  # fmt: skip


def _css(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _checked_texts(texts: Sequence[str] | pd.Series) -> list[str]:
    if isinstance(texts, str):
        raise DataError("explain() takes a list of texts; wrap a single text in a list: explain([text])")
    texts = texts.tolist() if isinstance(texts, pd.Series) else list(texts)
    for i, text in enumerate(texts):
        if clean_text(text) is None:
            raise DataError(f"text {i + 1} of {len(texts)} is empty; there is nothing to explain in it")
    return [str(t) for t in texts]


def _label_id(label: str | None, labels: Sequence[str]) -> int | None:
    if label is None:
        return None
    if label not in labels:
        known = ", ".join(f"'{name}'" for name in labels)
        raise ConfigError(f"unknown label '{label}'; the model's labels are {known}")
    return list(labels).index(label)


def _centred_logits(model: Any) -> Any:
    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (rows, labels)
        return logits - logits.mean(dim=-1, keepdim=True)

    return forward


def _fp32(model: Any) -> Any:
    if next(model.parameters()).dtype == torch.float32:
        return model
    logger.info("explaining through an fp32 copy of the %s weights", next(model.parameters()).dtype)
    return copy.deepcopy(model).float()


def _padded(tokenizer: Any, encoded: Any, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and the baseline ids ([PAD] for every word piece), all (rows, longest)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    longest = max(len(encoded["input_ids"][r]) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    baseline = ids.clone()
    for i, row in enumerate(rows):
        seq = torch.tensor(encoded["input_ids"][row], dtype=torch.long)
        special = torch.tensor([w is None for w in encoded.word_ids(row)])
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
        baseline[i, : len(seq)] = torch.where(special, seq, pad_id)
    return ids, mask, baseline


def _table_texts(frame: pd.DataFrame, path: str, text_cols: list[str]) -> list[str]:
    """The non-empty texts of a table (empty rows are skipped and counted in a log line)."""
    texts = join_text(frame, text_cols, path)
    present = [t for t in texts.tolist() if t is not None]
    if len(present) < len(texts):
        logger.warning("%s: skipped %d of %d rows with empty text", path, len(texts) - len(present), len(texts))
    if not present:
        raise DataError(f"{path}: no rows with text to explain")
    return present
