"""Domain events: written to the outbox with the change that caused them, relayed by the worker."""
