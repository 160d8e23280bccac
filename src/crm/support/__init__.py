"""Support measures of investment projects and the committee decisions on them (PROJECTS.md)."""
