"""agentengine-migrate: find (``agentengine check``) and rewrite (``agentengine migrate``) uses of
deprecated execution-engine modules.

Importing this package is cheap: the names below are loaded on first use.

    from agentengine_migrate import load_spec, scan_files, migrate_files
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_migrate.check import ScanReport, scan_files
    from agentengine_migrate.findings import RULES, Finding
    from agentengine_migrate.migrate import MigrateResult, migrate_files
    from agentengine_migrate.rewrite import migrate_source
    from agentengine_migrate.scan import scan_source
    from agentengine_migrate.spec import MigrationSpec, SpecError, load_spec

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "Finding",
    "MigrateResult",
    "MigrationSpec",
    "ScanReport",
    "SpecError",
    "load_spec",
    "migrate_files",
    "migrate_source",
    "scan_files",
    "scan_source",
]

_HOMES = {
    "RULES": "findings",
    "Finding": "findings",
    "MigrateResult": "migrate",
    "migrate_files": "migrate",
    "migrate_source": "rewrite",
    "ScanReport": "check",
    "scan_files": "check",
    "scan_source": "scan",
    "MigrationSpec": "spec",
    "SpecError": "spec",
    "load_spec": "spec",
}


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"agentengine_migrate.{home}" for name, home in _HOMES.items()}
)
