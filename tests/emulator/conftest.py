"""Fixtures for the emulator tests: in-process emulators that fail the test if the emulator had a bug.

`emulator` is one session-wide emulator with default settings (most tests only need a server); tests that
need their own knobs use `make_emulator(**config)`. Both assert, after each test, that no request ended in
an internal error: the emulator turns its own exceptions into 500 bodies, and a test must notice them.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from emulator.emu_helpers import assert_no_internal_errors

from batchpilot.emulator.http.server import Emulator

from batchpilot.emulator.config import EmulatorConfig

@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    log = tmp_path_factory.mktemp("emulator") / "requests.jsonl"
    with Emulator(EmulatorConfig(log_path=str(log))) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emulator" in request.fixturenames:
        assert_no_internal_errors(request.getfixturevalue("emulator"))


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    started: list[Emulator] = []

    def make(**config: Any) -> Emulator:
        emu = Emulator(EmulatorConfig(**config)).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        try:
            assert_no_internal_errors(emu)
        finally:
            emu.stop()


