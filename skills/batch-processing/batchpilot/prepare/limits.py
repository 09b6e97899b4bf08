"""Item limits that the CLI shows as option defaults, kept apart so reading them imports nothing else."""

DEFAULT_MAX_ITEM_BYTES = 512 * 1024
