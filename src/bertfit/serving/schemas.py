"""The requests and responses of the HTTP API (pydantic): what /docs shows, and what a wrong type is refused by."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# A text, null (an empty row: its prediction is null), or for pair models [text, second text].
Text = str | tuple[str | None, str | None] | None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[Text] = Field(
        description="Texts to label (null or empty: a row with a null label); pair models: [text, second text].",
        examples=[["i feel wonderful today", "what a dull evening"]],
    )
    probs: bool = Field(False, description="Single-label models: add every label's score ('probs').")


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str | None] = Field(description="Texts to explain (null or empty: a null explanation).")
    label: str | None = Field(None, description="The label to explain [each text's predicted label].")
    steps: int = Field(50, ge=1, le=300, description="Integration steps: more make the sums closer [50].")


class ModelId(BaseModel):
    id: str = Field(description="The model folder's name.")
    version: str = Field(description="When the model was trained (bertfit.json 'created'), else a stamp of its files.")


class Prediction(BaseModel):
    """Single-label models: the label and its score (null for an empty text); `probs` when asked for.
    Multi-label models: the labels at or above their thresholds and every label's score."""

    label: str | None = None
    score: float | None = None
    probs: dict[str, float | None] | None = None
    labels: list[str] | None = None
    scores: dict[str, float] | None = None


class PredictResponse(BaseModel):
    model: ModelId
    predictions: list[Prediction]


class Explanation(BaseModel):
    text: str
    label: str
    score: float
    predicted: str
    words: list[str]
    spans: list[tuple[int, int]]
    attributions: list[float]
    delta: float
    logit_diff: float


class ExplainResponse(BaseModel):
    model: ModelId
    explanations: list[Explanation | None]


class Health(BaseModel):
    status: str = Field(description="ok | loading | draining")


class FileJob(BaseModel):
    id: str
    status: str = Field(description="queued | running | done | failed")
    rows: int = Field(0, description="Rows labelled so far.")
    name: str = Field(description="The labelled file's name when downloaded.")
    error: str | None = None
    download: str | None = Field(None, description="Where to GET the labelled file, once done.")
