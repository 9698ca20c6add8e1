"""Fetch dair-ai/emotion from the Hugging Face hub into Parquet files with `text` and `label` (label names)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: Path) -> None:
    try:
        from datasets import load_dataset
    except ImportError:
        sys.exit("the demo needs the 'datasets' package to fetch data: pip install 'bertfit[hub]'")
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset("dair-ai/emotion")
    names = dataset["train"].features["label"].names
    for split in ("train", "validation", "test"):
        frame = dataset[split].to_pandas()
        frame["label"] = frame["label"].map(lambda i: names[i])
        frame.to_parquet(out / f"{split}.parquet", index=False)
        print(f"{split}: {len(frame)} rows -> {out / f'{split}.parquet'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
