"""One training run's fixed facts, resolved once by train() and read by each stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState

from bertfit.config import RunConfig
from bertfit.training.extensions import Extensions


@dataclass
class Job:
    cfg: RunConfig
    output_dir: Path
    work: Path  # the run's work folder beside the output: checkpoints, logs, the staged model
    source: str  # the base model's folder or hub name, as loaded
    base_name: str  # ... and as recorded
    state: PartialState  # this process among those of a DDP run
    progress: bool
    cache_dir: str | Path | None
    started: float  # time.time() when train() was called
    extensions: Extensions

    @property
    def main(self) -> bool:
        """The first process: it alone writes the log, the model and the published folder."""
        return self.state.is_main_process
