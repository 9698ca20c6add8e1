"""Run `bertfit check` on every dataset in ../shared/data and print one Markdown table (docs/data-checks.md).

python scripts/check_shared_data.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bertfit

COUNTED = {
    "duplicates": "exact dup texts",
    "normalised_duplicates": "normalised dup texts",
    "conflicting_duplicates": "conflicting texts",
    "mojibake": "mojibake rows",
    "replacement_characters": "U+FFFD rows",
    "control_characters": "control-char rows",
}


def splits(folder: Path) -> tuple[Path, Path | None, Path | None]:
    files = {p.stem: p for p in folder.glob("*.parquet")}
    train = files.get("train") or files.get("validation")  # yelp sentences: no train split
    validation = files.get("validation") if "train" in files else None
    return train, validation, files.get("test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args()
    columns = ["dataset (splits)", "rows", *COUNTED.values(), "leakage rows (exact)", "errors", "warnings"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|" + "--:|" * len(COUNTED) + "---|--:|--:|")
    details = []
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        train, validation, test = splits(folder)
        started = time.perf_counter()
        report = bertfit.check(train, validation=validation, test=test, lengths=False)
        seconds = time.perf_counter() - started
        rows = ", ".join(f"{s} {v['rows']:,}" for s, v in report.stats["splits"].items())
        counts = {code: sum(f.count for f in report.findings if f.code == code and f.split == "train")
                  for code in COUNTED}  # fmt: skip
        leaks = "; ".join(f"{f.split} {f.count:,}" for f in report.findings if f.code == "leakage") or "0"
        names = f"{folder.name} ({', '.join(p.stem for p in (train, validation, test) if p)})"
        print(f"| {names} | {rows} | " + " | ".join(f"{counts[c]:,}" for c in COUNTED)
              + f" | {leaks} | {len(report.errors)} | {len(report.warnings)} |")  # fmt: skip
        details.append((folder.name, seconds, report))
    for name, seconds, report in details:
        print(f"\n{name} ({seconds:.1f} s):")
        for f in report.findings:
            if f.severity != "info":
                print(f"- {f.severity} [{f.split}] {f.code}: {f.message}")


if __name__ == "__main__":
    main()
