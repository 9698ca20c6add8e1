"""Label review, selection of rows for labelling, learning curves."""
