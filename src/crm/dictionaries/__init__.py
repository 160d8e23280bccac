"""Per-organization dictionaries of the projects module: industries, districts, support programs and
providers (PROJECTS.md "Dictionaries")."""
