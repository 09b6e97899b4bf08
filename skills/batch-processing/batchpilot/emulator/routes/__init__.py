"""The emulator's endpoints: /v1/messages, /v1/messages/batches and the /_emulator admin routes."""
