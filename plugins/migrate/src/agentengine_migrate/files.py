"""Which files to scan and how they are named: walking directories with git's ignore rules and
``--exclude`` globs; a file's display path, package and module name.

The matcher follows gitignore(5): ``#`` comments, ``!`` negation, a trailing ``/`` for
directories only, a pattern with an inner ``/`` anchored to its file's directory, ``*``, ``?``,
``[...]`` and ``**``. It is written here rather than imported because ``check`` also runs in
pre-commit on a handful of files, where a heavier import would cost more than the scan.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_EXCLUDES",
    "PYTHON_SUFFIXES",
    "FileSelector",
    "IgnoreRules",
    "display_path",
    "module_name_of",
    "package_of",
    "relative_posix",
]

#: Directories never walked into (the same list ruff uses, so both tools see the same files).
DEFAULT_EXCLUDES = frozenset(
    {
        ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints",
        ".mypy_cache", ".nox", ".pants.d", ".pyenv", ".pytest_cache", ".pytype", ".ruff_cache",
        ".svn", ".tox", ".venv", ".vscode", "__pypackages__", "_build", "buck-out", "dist",
        "node_modules", "site-packages", "venv",
    }
)  # fmt: skip

PYTHON_SUFFIXES = (".py", ".pyi")


def _glob_to_regex(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 2)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(segment[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    directory_only: bool


def _compile(line: str) -> _Pattern | None:
    line = line.rstrip("\n").rstrip("\r")
    if not line.strip() or line.startswith("#"):
        return None
    if not line.endswith("\\ "):
        line = line.rstrip(" ")
    negated = line.startswith("!")
    if negated or line.startswith(("\\!", "\\#")):
        line = line[1:]
    directory_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    parts = line.split("/")
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:.*/)?"
        else:
            regex += _glob_to_regex(part) + ("" if last else "/")
    if not anchored:
        regex = "(?:.*/)?" + regex
    return _Pattern(re.compile(regex + r"\Z", re.DOTALL), negated, directory_only)


class IgnoreRules:
    """The patterns of one ignore file (or ``--exclude`` list), relative to ``base``."""

    __slots__ = ("base", "patterns")

    def __init__(self, base: Path, lines: Iterable[str]) -> None:
        self.base = base
        self.patterns = [p for p in map(_compile, lines) if p is not None]

    def verdict(self, relative: str, is_dir: bool) -> bool | None:
        """True: ignored; False: re-included by ``!``; None: no pattern matched."""
        result: bool | None = None
        for pattern in self.patterns:
            if pattern.directory_only and not is_dir:
                continue
            if pattern.regex.match(relative):
                result = not pattern.negated
        return result

    @classmethod
    def read(cls, path: Path) -> IgnoreRules | None:
        """The rules of an ignore file, or None when it does not exist or is empty."""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        rules = cls(path.parent, text.splitlines())
        return rules if rules.patterns else None


def relative_posix(path: Path, base: Path) -> str | None:
    """``path`` relative to ``base`` with ``/`` separators, or None when it is not inside."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return None


def display_path(path: Path, cwd: Path) -> str:
    """How reports name ``path``: relative to ``cwd`` when inside it, else absolute."""
    relative = relative_posix(path, cwd)
    return path.as_posix() if relative is None else relative


class FileSelector:
    """Expands PATH arguments into the Python files to scan.

    Directories are walked (skipping ``DEFAULT_EXCLUDES``, ``.gitignore``d and ``--exclude``d
    entries). A file named on the command line is scanned even when excluded, as ruff does,
    unless ``force_exclude`` (what a pre-commit hook wants).
    """

    def __init__(
        self,
        root: Path,
        exclude: Sequence[str] = (),
        *,
        respect_gitignore: bool = True,
        force_exclude: bool = False,
        suffixes: tuple[str, ...] = PYTHON_SUFFIXES,
    ) -> None:
        self.root = root.resolve()
        self.suffixes = suffixes
        self.exclude = IgnoreRules(self.root, exclude)
        self.respect_gitignore = respect_gitignore
        self.force_exclude = force_exclude
        self._ignore_cache: dict[Path, IgnoreRules | None] = {}
        #: Files named on the command line without one of ``suffixes``: not scanned.
        self.skipped: list[Path] = []

    def _rules_in(self, directory: Path) -> IgnoreRules | None:
        if directory not in self._ignore_cache:
            self._ignore_cache[directory] = IgnoreRules.read(directory / ".gitignore")
        return self._ignore_cache[directory]

    def _ancestor_rules(self, directory: Path) -> list[IgnoreRules]:
        """The .gitignore rules of ``directory`` and its parents up to the repository top."""
        if not self.respect_gitignore:
            return []
        chain: list[Path] = []
        for candidate in (directory, *directory.parents):
            chain.append(candidate)
            if (candidate / ".git").exists():
                break
        else:
            # Not in a git repository: honour the project's own .gitignore files only.
            chain = [d for d in chain if d == self.root or self.root in d.parents]
        rules = [self._rules_in(d) for d in reversed(chain)]
        return [r for r in rules if r is not None]

    def _ignored(self, path: Path, is_dir: bool, rules: Sequence[IgnoreRules]) -> bool:
        if path.name in DEFAULT_EXCLUDES and is_dir:
            return True
        rel = relative_posix(path, self.root)
        if rel is not None and self.exclude.patterns and self.exclude.verdict(rel, is_dir):
            return True
        ignored = False
        for rule in rules:
            rel_to_rule = relative_posix(path, rule.base)
            if rel_to_rule is None:
                continue
            verdict = rule.verdict(rel_to_rule, is_dir)
            if verdict is not None:
                ignored = verdict
        return ignored

    def _excluded_explicit(self, path: Path) -> bool:
        rules = self._ancestor_rules(path.parent)
        for ancestor in reversed(path.parents):
            inside = self.root in ancestor.parents
            if inside and self._ignored(ancestor, True, rules):
                return True
        return self._ignored(path, False, rules)

    def collect(self, paths: Iterable[Path]) -> list[Path]:
        """The files to scan, each once, in a stable order."""
        seen: set[Path] = set()
        out: list[Path] = []
        for given in paths:
            path = Path(os.path.abspath(given))
            if path.is_dir():
                files: Iterable[Path] = self._walk(path, self._ancestor_rules(path))
            elif not path.name.endswith(self.suffixes):
                self.skipped.append(path)
                continue
            elif self.force_exclude and self._excluded_explicit(path):
                continue
            else:
                files = (path,)
            for file in files:
                if file not in seen:
                    seen.add(file)
                    out.append(file)
        return out

    def _walk(self, directory: Path, rules: list[IgnoreRules]) -> Iterator[Path]:
        local = self._rules_in(directory) if self.respect_gitignore else None
        if local is not None and (not rules or rules[-1] is not local):
            rules = [*rules, local]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if self._ignored(path, True, rules):
                    continue
                yield from self._walk(path, rules)
            elif entry.name.endswith(self.suffixes) and entry.is_file():
                if self._ignored(path, False, rules):
                    continue
                yield path


def package_of(path: Path) -> str | None:
    """The dotted package containing ``path`` (directories with ``__init__.py``), or None."""
    parts: list[str] = []
    directory = path.parent
    while (directory / "__init__.py").is_file() or (directory / "__init__.pyi").is_file():
        parts.append(directory.name)
        if directory.parent == directory:
            break
        directory = directory.parent
    return ".".join(reversed(parts)) or None


def module_name_of(path: Path) -> str | None:
    """The dotted module name of ``path`` (``pkg/sub/mod.py`` -> ``pkg.sub.mod``), or None."""
    package = package_of(path)
    stem = path.name.rpartition(".")[0]
    if stem == "__init__":
        return package
    if package is None:
        return stem if stem.isidentifier() else None
    return f"{package}.{stem}"
