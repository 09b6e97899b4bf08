"""The API edge: the SDK client (real or emulated), the one failure taxonomy every mode shares, count_tokens."""
