#!/usr/bin/env bash
# The main job, end to end: fine-tune the default model on the emotion dataset (6 classes), evaluate on its
# test split, predict a file. Run through `make demo`, which puts the project's .venv on PATH first.
set -euo pipefail
OUT=${DEMO_OUT:-demo_out}
EPOCHS=${DEMO_EPOCHS:-3}
DATA=../shared/data/emotion
mkdir -p "$OUT"
if [ ! -d "$DATA" ]; then
  echo "== ../shared/data/emotion not found: fetching dair-ai/emotion from the Hugging Face hub"
  python scripts/fetch_emotion.py "$OUT/data"
  DATA=$OUT/data
fi
start=$SECONDS
echo "== bertfit check (train, validation, test)"
bertfit check "$DATA/train.parquet" --validation "$DATA/validation.parquet" --test "$DATA/test.parquet"
echo "== bertfit train ($EPOCHS epochs on $DATA/train.parquet)"
bertfit train "$DATA/train.parquet" --validation "$DATA/validation.parquet" --output "$OUT/emotion-model" \
  --epochs "$EPOCHS"
trained=$SECONDS
echo "== bertfit evaluate (test split)"
bertfit evaluate "$OUT/emotion-model" "$DATA/test.parquet" --output "$OUT/test-metrics.json" \
  --report "$OUT/test-report"
echo "== bertfit predict"
bertfit predict "$OUT/emotion-model" "$DATA/test.parquet" "$OUT/test-predictions.csv" --probs
python - "$OUT" "$start" "$trained" <<'PY'
import json, sys, time
out, start, trained = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(f"{out}/test-metrics.json"))
print(f"\nemotion test: accuracy {m['accuracy']:.4f}  macro_f1 {m['macro_f1']:.4f}  (n={m['n']})")
cal = json.load(open(f"{out}/emotion-model/bertfit.json"))["calibration"]
print(f"calibration: temperature {cal['temperature']:.3f}; ECE on validation {cal['ece_before']:.4f} -> "
      f"{cal['ece_after']:.4f}, on test {m['ece_uncalibrated']:.4f} -> {m['ece']:.4f}")
PY
echo "demo time: $((SECONDS - start))s (training $((trained - start))s)"
echo "outputs:  model $OUT/emotion-model/ (validation report: report/report.html)   metrics $OUT/test-metrics.json"
echo "          test report $OUT/test-report/report.html   predictions $OUT/test-predictions.csv"
