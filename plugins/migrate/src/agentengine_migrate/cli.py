"""The ``agentengine check`` and ``agentengine migrate`` commands.

Only click is imported here; each command imports what it needs when it runs (``check``
never imports libcst or, without a spec table, pydantic). Exit status: 0 clean, 1 findings
(or, for ``migrate``, something left for a person), 2 usage errors.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from agentengine_migrate.spec import MigrationSpec

__all__ = ["Inputs", "check_command", "commands", "main", "migrate_command"]


@dataclass(frozen=True, slots=True)
class Inputs:
    """The options both commands share: which files, with which spec, in how many processes."""

    paths: tuple[Path, ...]
    spec_file: Path | None
    presets: tuple[str, ...]
    exclude: tuple[str, ...]
    allow: tuple[str, ...]
    respect_gitignore: bool
    force_exclude: bool
    jobs: int

    def load_spec(self) -> MigrationSpec:
        """The spec (``--spec``, else the project's); a bad one is a usage error."""
        from agentengine_migrate.spec import SpecError, load_spec

        try:
            return load_spec(self.spec_file, presets=self.presets or None)
        except SpecError as exc:
            raise click.UsageError(str(exc)) from None

    def collect(self, spec: MigrationSpec) -> list[Path]:
        """The Python files PATHS name (default: the current directory), after excludes."""
        from agentengine_migrate.files import FileSelector

        selector = FileSelector(
            spec.root,
            (*spec.exclude, *self.exclude),
            respect_gitignore=self.respect_gitignore,
            force_exclude=self.force_exclude,
        )
        files = selector.collect(self.paths or (Path(),))
        for skipped in selector.skipped:
            click.echo(f"warning: {skipped} is not a Python file (.py, .pyi); skipped", err=True)
        return files


_PATHS = click.argument(
    "paths", nargs=-1, type=click.Path(exists=True, file_okay=True, path_type=Path)
)


def _common(func: Callable[..., None]) -> Callable[..., None]:
    """Add the shared options (and PATHS) to a command, given to it as one ``Inputs``."""
    fields = [f.name for f in dataclass_fields(Inputs)]

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        inputs = Inputs(**{name: kwargs.pop(name) for name in fields})
        func(inputs, **kwargs)

    options = [
        _PATHS,
        click.option(
            "--spec",
            "spec_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="TOML migration spec (default: [tool.agentengine.migrate] of pyproject.toml).",
        ),
        click.option(
            "--preset",
            "presets",
            multiple=True,
            metavar="NAME",
            help="Built-in preset to use instead of the spec's (agentengine-legacy, netra).",
        ),
        click.option(
            "--exclude", multiple=True, metavar="GLOB", help="Skip matching files (gitignore)."
        ),
        click.option(
            "--allow",
            multiple=True,
            metavar="GLOB",
            help="Files allowed to use deprecated paths (shim modules); added to the spec's.",
        ),
        click.option(
            "--respect-gitignore/--no-respect-gitignore",
            default=True,
            show_default=True,
            help="Skip files .gitignore ignores.",
        ),
        click.option(
            "--force-exclude",
            is_flag=True,
            help="Apply excludes to files named on the command line too (for pre-commit).",
        ),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(0),
            default=0,
            help="Worker processes: 0 (default) uses one per CPU when many files qualify.",
        ),
    ]
    decorated: Callable[..., None] = command
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


@click.command("check")
@_common
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "sarif"]),
    default="text",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the report to this file instead of stdout.",
)
@click.option(
    "--ignore", "ignored_codes", multiple=True, metavar="CODE", help="Do not report CODE."
)
@click.option(
    "--emit-ruff-config",
    is_flag=True,
    help="Print the equivalent ruff banned-api table (imports only) and exit.",
)
def check_command(
    inputs: Inputs,
    output_format: str,
    output: Path | None,
    ignored_codes: tuple[str, ...],
    emit_ruff_config: bool,
) -> None:
    """Find uses of deprecated module paths in PATHS (default: the current directory).

    Reports imports in every form (errors) and strings naming a deprecated path (warnings:
    mock.patch targets, import_module, sys.modules keys, logger names). Exit 1 when anything
    is found, 0 when clean.
    """
    from agentengine_migrate.findings import RULES

    spec = inputs.load_spec()
    if emit_ruff_config:
        from agentengine_migrate.report import render_ruff_config

        click.echo(render_ruff_config(spec), nl=False)
        return
    unknown = sorted({c.upper() for c in ignored_codes} - set(RULES))
    if unknown:
        raise click.BadParameter(
            f"unknown code(s) {', '.join(unknown)}; known codes: {', '.join(RULES)}",
            param_hint="--ignore",
        )
    from agentengine_migrate.check import scan_files

    cwd = Path.cwd()
    files = inputs.collect(spec)
    report = scan_files(files, spec, cwd=cwd, allow=inputs.allow, jobs=inputs.jobs)
    if ignored_codes:
        drop = {c.upper() for c in ignored_codes}
        report.findings = [f for f in report.findings if f.code not in drop]
    from agentengine_migrate import report as render

    if output_format == "json":
        text = render.render_json(report)
    elif output_format == "sarif":
        text = render.render_sarif(report, cwd)
    else:
        text = render.render_text(report)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)
    sys.exit(1 if report.findings else 0)


@click.command("migrate")
@_common
@click.option(
    "--diff",
    "--dry-run",
    "show_diff",
    is_flag=True,
    help="Print a unified diff and write nothing. Alias: --dry-run.",
)
@click.option(
    "--include-raises",
    is_flag=True,
    help="Also rewrite imports inside `pytest.raises` blocks (left alone by default).",
)
def migrate_command(
    inputs: Inputs,
    show_diff: bool,
    include_raises: bool,
) -> None:
    """Rewrite deprecated imports, mock.patch targets and configured calls in PATHS.

    Local names are kept, comments and formatting too; each file is checked to compile and
    written atomically. Exit 0 when nothing is left to do, 1 when something needs a person
    (or, with --diff, when there are changes to make).
    """
    from agentengine_migrate.migrate import migrate_files, render_summary

    spec = inputs.load_spec()
    files = inputs.collect(spec)
    write = not show_diff
    result = migrate_files(
        files,
        spec,
        cwd=Path.cwd(),
        allow=inputs.allow,
        write=write,
        include_raises=include_raises,
        jobs=inputs.jobs,
    )
    if not write:
        for diff in result.diffs:
            click.echo(diff, nl=False)
    click.echo(render_summary(result, wrote=write), err=not write)
    pending = bool(result.needs_person) or bool(result.untouched)
    sys.exit(1 if pending or (not write and result.changed) else 0)


def commands() -> list[click.Command]:
    """The commands this distribution adds to ``agentengine``."""
    return [check_command, migrate_command]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """agentengine-migrate: find and rewrite uses of deprecated engine modules.

    The same commands as ``agentengine check`` / ``agentengine migrate``, without loading
    the engine or other plugins (``python -m agentengine_migrate``).
    """


for _command in commands():
    main.add_command(_command)
