"""The streaming data checker (`bertfit check`) and its findings."""
