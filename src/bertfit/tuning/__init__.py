"""bertfit tune: an Optuna search over training settings, scored on validation data, resumable after a kill."""
