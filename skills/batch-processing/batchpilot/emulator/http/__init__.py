"""The emulator's HTTP side: the threaded server, the request/response data, and the streaming body reader."""
