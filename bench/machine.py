"""What the benchmark scripts record about the machine and the run: CPU, flags, cores, GPU, versions, command."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import transformers

import bertfit
from bertfit.modeling import pick_precision


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": model or platform.processor(),
        "flags": {f: f in flags for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8")},
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bertfit_precision": pick_precision(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "bertfit": getattr(bertfit, "__version__", "?"), "python": platform.python_version()},
        "command": shlex.join(["python", *sys.argv]),
    }  # fmt: skip
