"""Install a provider plugin at runtime the way a separate distribution would: a throwaway
`<name>-0.dist-info` with an `entry_points.txt` in group `crm.integrations`, put on `sys.path`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crm.integrations import registry


def write_distribution(name: str, target: str, directory: Path) -> Path:
    """Write the distribution's metadata under `directory/site` and return that site directory
    (put it on `sys.path`, or on `PYTHONPATH` of a worker process)."""
    site = directory / "site"
    dist = site / f"crm_plugin_{name}-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: crm-plugin-{name}\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{name} = {target}\n")
    return site


@contextmanager
def installed_provider(name: str, target: str, directory: Path) -> Iterator[Path]:
    """Make `target` ("module:attr") the provider `name` for the duration of the block."""
    site = write_distribution(name, target, directory)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    registry.reload_providers()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        registry.reload_providers()
