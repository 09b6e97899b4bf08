"""Token counts from the API's count_tokens endpoint, for `plan --count-tokens`."""

from __future__ import annotations

from batchpilot.api.client import api_client, describe_api_error

COUNT_KEYS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config")


def count_sample(sample: list[dict], emulate: bool) -> int:
    """Sum of the API's input-token counts for these request params."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    total = 0
    with api_client(emulate) as client:
        for params in sample:
            try:
                total += client.messages.count_tokens(**{k: v for k, v in params.items() if k in COUNT_KEYS}).input_tokens
            except anthropic.APIError as exc:
                raise describe_api_error(exc) from None
    return total
