"""`python -m batchpilot` runs the command-line interface."""

from batchpilot.cli.main import main

main()
