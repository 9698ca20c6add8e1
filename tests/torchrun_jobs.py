"""Run under torchrun by tests/test_ddp.py: several trainings, one after another, in the same two processes, so that
the processes start once (each start imports torch and transformers, seconds of CPU). argv[1]: a JSON list of
bertfit.train keyword arguments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bertfit

if __name__ == "__main__":
    for job in json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")):
        bertfit.train(job.pop("data"), job.pop("output_dir"), progress=False, **job)
