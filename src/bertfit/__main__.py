"""`python -m bertfit` runs the command line, as the `bertfit` script does."""

from .cli import main

main()
