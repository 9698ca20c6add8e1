"""`python -m bertfit` runs the command line, as the `bertfit` script does."""

from bertfit.cli import main

main()
