"""train(): check, tokenize, build the Trainer, fit, finalize, publish."""
