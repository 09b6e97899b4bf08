"""`python -m batchpilot` runs the command-line interface."""

from batchpilot.cli import main

main()
