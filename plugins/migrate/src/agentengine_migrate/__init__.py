"""agentengine-migrate: find (``agentengine check``) and rewrite (``agentengine migrate``) uses of
deprecated execution-engine modules.

Importing this package is cheap: the names below are loaded on first use.

    from agentengine_migrate import load_spec, scan_files, migrate_files

The modules, one concern each (one file: no I/O, ``bytes`` in and out; many files: I/O and
worker processes):

- ``plugin.py``: the entry-point plugin; contributes the two commands.
- ``cli.py``: the ``check`` and ``migrate`` click commands: options, output, exit status.
- ``spec.py``: the migration spec (deprecated paths and their replacements) and loading it.
- ``spec_validation.py``: validating a user's spec table with pydantic (only when there is one).
- ``presets.py``: the built-in spec tables (``agentengine-legacy``, ``netra``).
- ``files.py``: which files to scan (directory walk, gitignore, excludes) and their names.
- ``syntax.py``: source rules shared by the scanner and the rewriters (relative imports, patch
  calls, ``pytest.raises`` blocks, line numbers).
- ``findings.py``: ``Finding``, the rule codes, ``RewriteTargets`` (what migrate may change).
- ``file_scan.py``: scanning one file's source (``scan_source``).
- ``check.py``: checking many files (``scan_files``): prefilter, allow-lists, shim modules.
- ``removal.py``: the removal report (``check --removal-report``): may a module be deleted?
- ``report.py``: rendering a check report as text, JSON, SARIF, or a ruff config.
- ``file_migration.py``: migrating one file's source (``migrate_source``): the safety rules.
- ``cst_rewrite.py``: rewriting the reported statements with libcst.
- ``text_rewrite.py``: the textual fallback where libcst does not round-trip a statement.
- ``migrate.py``: migrating many files (``migrate_files``): atomic writes, diffs, summary.
- ``workers.py``: running one function over many files in worker processes (``--jobs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentengine.lazy import lazy_exports

if TYPE_CHECKING:
    from agentengine_migrate.check import ScanReport, scan_files
    from agentengine_migrate.file_migration import migrate_source
    from agentengine_migrate.file_scan import scan_source
    from agentengine_migrate.findings import RULES, Finding
    from agentengine_migrate.migrate import MigrateResult, migrate_files
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
    "migrate_source": "file_migration",
    "ScanReport": "check",
    "scan_files": "check",
    "scan_source": "file_scan",
    "MigrationSpec": "spec",
    "SpecError": "spec",
    "load_spec": "spec",
}


__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"agentengine_migrate.{home}" for name, home in _HOMES.items()}
)
