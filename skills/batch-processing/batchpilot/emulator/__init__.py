"""The local Anthropic API emulator: the Messages and Message Batches endpoints on loopback, for free rehearsals
and tests.

    from batchpilot.emulator.config import EmulatorConfig
    from batchpilot.emulator.http.server import Emulator

    with Emulator(EmulatorConfig(seed=1, time_scale=3600)) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="test")
        ...

It serves POST /v1/messages (JSON and SSE), POST /v1/messages/count_tokens and the /v1/messages/batches
family with the real API's shapes, status codes, error bodies and headers; answers deterministically for a
seed (schema-valid objects for JSON-schema and forced-tool requests); simulates prompt caching, token-bucket
rate limits, batch processing on a scalable clock, and injected faults; and logs one JSON line per request.
The user-facing reference is `references/emulator.md` in the skill. Standard library only: it never imports
the `anthropic` SDK.
"""
