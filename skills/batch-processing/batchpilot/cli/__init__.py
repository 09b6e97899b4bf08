"""Click commands, one module per concern. Each is thin: parse options, call one function of the pipeline, emit the receipt.

Modules here import only click and light core modules at import time; the pipeline (executors, merge, the
emulator; the SDK under them) is imported inside the command that runs it, so `--help` stays fast.
"""
