"""batchpilot: run one prompt template over many items through Claude, then merge and validate the results.

The package is the engine of the `batch-processing` Claude Code skill. Its command-line interface lives in
`batchpilot.cli.main`; the pipeline is items → templates/requests → run directory → an executor → merge → report.

Every `__init__.py` here holds only a docstring: some skill installers copy no file whose name starts with `_`,
so the package must also work as a namespace package without them.
"""
