"""The ``agentengine check`` and ``agentengine migrate`` commands.

Only click is imported here; each command imports what it needs when it runs (``check``
never imports libcst or, without a spec table, pydantic). Exit status: 0 clean, 1 findings
(or, for ``migrate``, something left for a person), 2 usage errors.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields as dataclass_fields
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
    select: tuple[str, ...]
    ignore: tuple[str, ...]

    def load_spec(self) -> MigrationSpec:
        """The spec (``--spec``, else the project's); a bad one is a usage error.

        ``--select`` replaces the spec's ``select``; ``--ignore`` adds to its ``ignore``.
        """
        from dataclasses import replace

        from agentengine_migrate.spec import SpecError, load_spec

        try:
            spec = load_spec(self.spec_file, presets=self.presets or None)
        except SpecError as exc:
            raise click.UsageError(str(exc)) from None
        if not self.select and not self.ignore:
            return spec
        spec = replace(
            spec,
            select=_split_codes(self.select) or spec.select,
            ignore=(*spec.ignore, *_split_codes(self.ignore)),
        )
        try:
            spec.codes  # noqa: B018 - validates the selectors now
        except ValueError as exc:
            option = "--select" if any(_bad(c) for c in _split_codes(self.select)) else "--ignore"
            raise click.BadParameter(str(exc), param_hint=option) from None
        return spec

    def collect(self, spec: MigrationSpec) -> list[Path]:
        """The files PATHS name (default: the current directory), after excludes: Python
        files, and Markdown files unless AEM107 is not selected."""
        from agentengine_migrate.file_scan import MARKDOWN_SUFFIXES
        from agentengine_migrate.files import PYTHON_SUFFIXES, FileSelector

        markdown = "AEM107" in spec.codes
        suffixes = (*PYTHON_SUFFIXES, *MARKDOWN_SUFFIXES) if markdown else PYTHON_SUFFIXES
        selector = FileSelector(
            spec.root,
            (*spec.exclude, *self.exclude),
            respect_gitignore=self.respect_gitignore,
            force_exclude=self.force_exclude,
            suffixes=suffixes,
        )
        files = selector.collect(self.paths or (Path(),))
        kinds = "Python or Markdown file" if markdown else "Python file"
        for skipped in selector.skipped:
            click.echo(
                f"warning: {skipped} is not a {kinds} ({', '.join(suffixes)}); skipped", err=True
            )
        return files


def _split_codes(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--select AEM0,AEM101 --select AEM2`` -> the selectors, one each."""
    return tuple(c.strip() for value in values for c in value.split(",") if c.strip())


def _bad(selector: str) -> bool:
    from agentengine_migrate.findings import select_codes

    try:
        select_codes([selector])
    except ValueError:
        return True
    return False


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
        click.option(
            "--select",
            multiple=True,
            metavar="CODE",
            help="Only these codes (or prefixes: AEM1 is AEM101-AEM107); replaces the spec's.",
        ),
        click.option(
            "--ignore",
            multiple=True,
            metavar="CODE",
            help="Not these codes (or prefixes); added to the spec's ignore.",
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
    "--emit-ruff-config",
    is_flag=True,
    help="Print the equivalent ruff banned-api table (imports only) and exit.",
)
@click.option(
    "--removal-report",
    is_flag=True,
    help=(
        "Per deprecated module: the importers and string references left, and whether it is "
        "safe to remove. Exit 0 only when every module asked about is."
    ),
)
@click.option(
    "--module",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="With --removal-report: only this deprecated module (repeatable; default: all).",
)
def check_command(
    inputs: Inputs,
    output_format: str,
    output: Path | None,
    emit_ruff_config: bool,
    removal_report: bool,
    modules: tuple[str, ...],
) -> None:
    """Find uses of deprecated module paths in PATHS (default: the current directory).

    Reports imports in every form and strings naming a deprecated path: patch and import
    targets (errors), sys.modules keys, logger names and bare dotted paths (warnings), and
    mentions in longer strings and Markdown (info). Exit 1 when an error or a warning is
    found, 0 otherwise.
    """
    spec = inputs.load_spec()
    if emit_ruff_config:
        from agentengine_migrate.report import render_ruff_config

        click.echo(render_ruff_config(spec), nl=False)
        return
    if modules and not removal_report:
        raise click.UsageError("--module only applies to --removal-report")
    from agentengine_migrate.check import scan_files

    cwd = Path.cwd()
    if removal_report:
        _removal(inputs, spec, modules, output_format, output, cwd)
        return
    files = inputs.collect(spec)
    report = scan_files(files, spec, cwd=cwd, allow=inputs.allow, jobs=inputs.jobs)
    from agentengine_migrate import report as render

    if output_format == "json":
        text = render.render_json(report)
    elif output_format == "sarif":
        text = render.render_sarif(report, cwd)
    else:
        text = render.render_text(report)
    _emit(text, output)
    sys.exit(1 if render.failing(report) else 0)


def _emit(text: str, output: Path | None) -> None:
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


def _removal(
    inputs: Inputs,
    spec: MigrationSpec,
    modules: tuple[str, ...],
    output_format: str,
    output: Path | None,
    cwd: Path,
) -> None:
    """``check --removal-report``: every code counts, whatever --select/--ignore say."""
    from dataclasses import replace

    from agentengine_migrate.check import scan_files
    from agentengine_migrate.removal import (
        removal_report,
        render_removal_json,
        render_removal_text,
        unknown_modules,
    )

    if output_format == "sarif":
        raise click.BadParameter("the removal report is text or json", param_hint="--format")
    unknown = unknown_modules(spec, modules)
    if unknown:
        known = "\n  ".join(sorted(spec.modules))
        raise click.BadParameter(
            f"{', '.join(unknown)}: not a deprecated module of the spec; the spec's modules:"
            f"\n  {known}",
            param_hint="--module",
        )
    everything = replace(spec, select=(), ignore=())
    files = inputs.collect(everything)
    report = scan_files(
        files, everything, cwd=cwd, allow=inputs.allow, jobs=inputs.jobs, every_code=True
    )
    entries = removal_report(report, spec, modules)
    if output_format == "json":
        text = render_removal_json(entries, report)
    else:
        text = render_removal_text(entries, report)
    _emit(text, output)
    sys.exit(0 if all(e.safe for e in entries) else 1)


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
@click.option(
    "--include-shims",
    is_flag=True,
    help="Also rewrite files that are deprecated modules themselves (left alone by default).",
)
def migrate_command(
    inputs: Inputs,
    show_diff: bool,
    include_raises: bool,
    include_shims: bool,
) -> None:
    """Rewrite deprecated imports, patch and import targets and configured calls in PATHS.

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
        include_shims=include_shims,
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
