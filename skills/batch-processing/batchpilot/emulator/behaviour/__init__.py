"""The emulator's behaviour: the deterministic responder, scenarios, schema-valid values, faults, request checks."""
