"""Metrics, calibration, thresholds, the report and the model card; evaluate()."""
