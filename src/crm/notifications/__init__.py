"""In-app notifications for users (SPEC §12)."""
