"""batchpilot: run one prompt template over many items through Claude, then merge and validate the results.

The package is the engine of the `batch-processing` Claude Code skill. Its command-line interface lives in
`batchpilot.cli`; the pipeline is items → templates/requests → run directory → an executor → merge → report.
"""

__version__ = "0.1.0"
