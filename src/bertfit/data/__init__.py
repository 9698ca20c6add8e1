"""Reading and writing tables value for value, usable rows, the token cache, locks and output paths."""
