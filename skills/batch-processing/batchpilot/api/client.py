"""The API client factory: the one place that reads the API key and decides real API vs. emulator.

The key comes only from `ANTHROPIC_API_KEY` (never argv, never a file); `ANTHROPIC_BASE_URL` is honoured by
the SDK itself. `emulate=True` starts the local emulator in-process and points the client at it, so any job
can be rehearsed for free. The `anthropic` SDK is imported here, lazily, so commands that never call the API
never pay for importing it.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator

from batchpilot.core.errors import BatchpilotError

API_KEY_ENV = "ANTHROPIC_API_KEY"
EMULATOR_KEY = "emulated-key"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """`url` with any `user:password@` part replaced by `***@`: a key put in a URL must never be printed."""
    return _USERINFO.sub(r"\1***@", url)


def shown_base_url() -> str:
    """The API address for messages and logs: ANTHROPIC_BASE_URL (redacted) or the default."""
    return redact_url(os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL)


def require_key() -> str:
    """The API key from the environment, or an error that points at --emulate."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise BatchpilotError(
            f"{API_KEY_ENV} is not set",
            f"export {API_KEY_ENV}=... to use the real API, or run the job in agents or headless mode, which need no "
            "key (`plan` says which); --emulate only rehearses it, with placeholder results",
        )
    return key


@contextmanager
def api_client(emulate: bool, *, async_client: bool = False, max_retries: int = 2, emulator_config: Any = None) -> Iterator[Any]:
    """Yield an `anthropic.Anthropic` (or `AsyncAnthropic`) client for the real API or an in-process emulator."""
    if emulate:
        from batchpilot.emulator.http.server import Emulator
        from batchpilot.emulator.config import EmulatorConfig

        with Emulator(emulator_config or EmulatorConfig()) as emu:
            yield _make(async_client, api_key=EMULATOR_KEY, base_url=emu.base_url, max_retries=max_retries)
        return
    key = require_key()
    yield _make(async_client, api_key=key, max_retries=max_retries)


def _make(async_client: bool, **kwargs: Any) -> Any:
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    cls = anthropic.AsyncAnthropic if async_client else anthropic.Anthropic
    try:
        return cls(**kwargs)
    except Exception as exc:  # the HTTP library refuses a malformed ANTHROPIC_BASE_URL (InvalidURL) here
        if "base_url" in kwargs or not os.environ.get("ANTHROPIC_BASE_URL"):
            raise
        raise BatchpilotError(f"ANTHROPIC_BASE_URL {shown_base_url()} is not a valid URL ({redact_url(str(exc))})",
                              "set it to an address such as https://api.anthropic.com, or unset it") from None


def describe_api_error(exc: Exception) -> BatchpilotError:
    """Turn an SDK exception into an Error/Hint the user can act on (never echoing the key)."""
    import anthropic  # API commands only: the SDK stays off the start-up path of the others

    if isinstance(exc, anthropic.AuthenticationError):
        return BatchpilotError(f"the API rejected the key ({exc.status_code})", f"check {API_KEY_ENV}; create a key in the Claude Console")
    if isinstance(exc, anthropic.APIConnectionError):
        base = shown_base_url()
        return BatchpilotError(f"cannot reach the API at {base}: {type(exc).__name__}",
                               "check the network and ANTHROPIC_BASE_URL, or add --emulate to rehearse offline")
    if isinstance(exc, anthropic.APIStatusError):
        message = getattr(exc, "message", str(exc))
        return BatchpilotError(f"the API answered {exc.status_code}: {redact_url(str(message))}",
                               "see references/troubleshooting.md")
    return BatchpilotError(f"API call failed: {redact_url(str(exc))}", "re-run the command; it resumes where it stopped")


@contextmanager
def sdk_errors() -> Iterator[None]:
    """Turn an SDK exception that escaped the executors into the Error/Hint of `describe_api_error`."""
    import anthropic  # only reached by commands that already hold a client

    try:
        yield
    except anthropic.AnthropicError as exc:
        raise describe_api_error(exc) from None
