"""The reliability suite: crash and resume, the fault matrix, bad input, secrets and path escapes."""
