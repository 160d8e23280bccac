"""Investment projects: the agency module (PROJECTS.md)."""
