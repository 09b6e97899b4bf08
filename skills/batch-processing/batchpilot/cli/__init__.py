"""Click commands, one module per concern. Each is thin: parse options, call the core, emit the receipt.

Modules here import only click and light core modules at import time; anything heavy (the SDK, the emulator)
is imported inside the command that needs it.
"""
