"""Pluggable integration providers and the generic sync engine (SPEC §12, §13)."""
