"""Admin endpoints of sync jobs (SPEC §12): start, list, inspect and cancel."""
