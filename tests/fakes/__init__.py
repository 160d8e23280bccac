"""Local fake servers of external providers, started by tests on 127.0.0.1."""
