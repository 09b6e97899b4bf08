"""The run directory: create and open a run, its journal, its lock, and the result records it holds."""
