"""The Message Batches executor: shards, submit, poll, fetch, the journal state, and the driver loop."""
