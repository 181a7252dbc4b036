"""Plumbing shared by the file generators (``otel-jobtrack rules`` and ``dashboards``).

Each generator renders a frozen dataclass of settings into files (path relative to an output
directory -> content). This module holds what they do alike: the command line (``--output-dir``,
``--config``, ``--set``, ``--selector``, ``--check``, ``--print-config``), reading a settings
file, applying settings onto the dataclass, and comparing with or writing to the output
directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from otel_jobtrack._core import extras
from otel_jobtrack.generators import shipped

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def apply_settings(base: C, data: Mapping[str, Any]) -> C:
    """``base`` with the settings in ``data`` (plain data, e.g. from YAML or JSON) applied.

    Each value is checked against the type of the current one: maps are merged into it, lists
    become tuples (of floats where the current one holds floats, else of strings), and
    booleans, numbers and strings must be what they replace.
    """
    fields = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"unknown setting {key!r}; known: {sorted(fields)}")
        current = getattr(base, key)
        if isinstance(current, Mapping):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} must be a mapping")
            value = {**current, **{str(k): str(v) for k, v in value.items()}}
        elif isinstance(current, tuple):
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"{key} must be a list")
            floats = bool(current) and isinstance(current[0], float)
            value = tuple(float(v) if floats else str(v) for v in value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
        elif isinstance(current, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            value = float(value)
        elif isinstance(current, str) and not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        changes[key] = value
    return dataclasses.replace(base, **changes)


def load_settings(path: Path, parse: Callable[[str], Any]) -> Mapping[str, Any]:
    """The mapping of setting -> value that ``parse`` reads from the file at ``path``."""
    data = parse(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of settings")
    return data


def parse_sets(sets: Sequence[str], parse_value: Callable[[str], Any]) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` items as a mapping, each value read by ``parse_value``."""
    overrides: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(raw)
    return overrides


def stale_files(rendered: Mapping[str, str], out_dir: Path) -> list[str]:
    """The files of ``rendered`` missing from ``out_dir`` or different there."""
    stale = []
    for rel, content in rendered.items():
        path = out_dir / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(rel)
    return stale


def write_files(rendered: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Write the files of ``rendered`` under ``out_dir``; other files there are left alone."""
    written = []
    for rel, content in rendered.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def add_common_arguments(
    parser: argparse.ArgumentParser,
    default_dir: str,
    *,
    config_help: str,
    set_help: str,
    print_help: str,
    extra: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The options every generator takes; ``extra`` adds its own after ``--selector``."""
    parser.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        default=Path(default_dir),
        help=f"where to write the files (default: {default_dir})",
    )
    parser.add_argument("--config", "-c", type=Path, help=config_help)
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=set_help
    )
    parser.add_argument(
        "--selector", help='label matchers for every jobtrack_* selector, e.g. job="billing-worker"'
    )
    extra(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if any generated file is missing or stale",
    )
    parser.add_argument("--print-config", action="store_true", help=print_help)


@dataclasses.dataclass(frozen=True)
class Needs:
    """The optional dependency a generator renders with (the defaults' output ships instead)."""

    module: str
    """Module to import, e.g. ``yaml``."""
    package: str
    """Distribution that provides it, e.g. ``PyYAML`` (for the message)."""
    extra: str
    """otel-jobtrack extra that installs it."""
    print_config: bool = False
    """``--print-config`` needs it too."""


@dataclasses.dataclass(frozen=True)
class Generator:
    """How one generator reads its settings and renders them (see :func:`run_generator`)."""

    prog: str
    """Command name, e.g. ``otel-jobtrack rules`` (error messages and the regenerate hint)."""
    default: Any
    """The default settings."""
    load_config: Callable[[Path], Any]
    """Settings from a ``--config`` file."""
    parse_value: Callable[[str], Any]
    """A ``--set`` value as plain data."""
    config_from_mapping: Callable[[Mapping[str, Any], Any], Any]
    """Settings with plain data applied."""
    option_keys: tuple[str, ...]
    """Settings that have a command-line option of their own (``--selector`` and the like)."""
    errors: tuple[type[Exception], ...]
    """Errors in the settings, reported with exit status 2."""
    dump_settings: Callable[[Any], str]
    """Every setting as text (``--print-config``)."""
    stale_files: Callable[[Path, Any], list[str]]
    write: Callable[[Path, Any], list[Path]]
    shipped: str = ""
    """Folder of the shipped files (``alerts``, ``dashboards``; see :mod:`.shipped`). With the
    default settings they are what gets written: copied when ``needs`` is not installed, and
    generated otherwise, plus the shipped files the generator does not produce (the rules'
    promtool tests), so the output is the same either way."""
    needs: Needs | None = None
    """What rendering needs; custom settings without it end with one line naming the extra."""
    render: Callable[[Any], Mapping[str, str]] | None = None
    """Every generated file (relative path -> content); when given, ``--check`` and writing
    use it (with the shipped files the defaults add) instead of ``stale_files``/``write``."""


def run_generator(gen: Generator, args: argparse.Namespace) -> int:
    """Apply the parsed command line: print the settings, ``--check`` or write the files."""
    needs = gen.needs
    if (
        needs is not None
        and (needs.print_config or not args.print_config)
        and not extras.installed(needs.module)
    ):
        return _without_needs(gen, needs, args)
    try:
        cfg = gen.load_config(args.config) if args.config else gen.default
        overrides = parse_sets(args.sets, gen.parse_value)
        for key in gen.option_keys:
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        cfg = gen.config_from_mapping(overrides, cfg)
    except gen.errors as exc:
        print(f"{gen.prog}: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(gen.dump_settings(cfg))
        return 0
    if gen.render is not None:
        files = dict(gen.render(cfg))
        if cfg == gen.default:  # the shipped files it does not produce (promtool tests)
            files = {**_shipped_files(gen), **files}
        if args.check:
            return _report_stale(gen, args.output_dir, stale_files(files, args.output_dir))
        written = write_files(files, args.output_dir)
    elif args.check:
        return _report_stale(gen, args.output_dir, gen.stale_files(args.output_dir, cfg))
    else:
        written = gen.write(args.output_dir, cfg)
    for path in written:
        print(path)
    return 0


def _custom_settings(gen: Generator, args: argparse.Namespace) -> bool:
    return bool(
        args.config is not None
        or args.sets
        or any(getattr(args, key) is not None for key in gen.option_keys)
    )


def _shipped_files(gen: Generator) -> dict[str, str]:
    return shipped.files(gen.shipped) if gen.shipped else {}


def _without_needs(gen: Generator, needs: Needs, args: argparse.Namespace) -> int:
    """Without the optional dependency: the shipped files for the defaults, else one line."""
    hint = extras.install_hint(needs.extra)
    if args.print_config or _custom_settings(gen, args):
        what = "--print-config needs" if args.print_config else "custom settings need"
        print(f"{gen.prog}: {what} {needs.package}: {hint}", file=sys.stderr)
        return 2
    files = _shipped_files(gen)
    if not files:
        print(
            f"{gen.prog}: {needs.package} is not installed and this installation ships no "
            f"{gen.shipped or 'generated'} files: {hint}",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return _report_stale(gen, args.output_dir, stale_files(files, args.output_dir))
    for path in write_files(files, args.output_dir):
        print(path)
    print(
        f"{gen.prog}: wrote the shipped files (default settings); to generate with your own "
        f"settings install {needs.package}: {hint}",
        file=sys.stderr,
    )
    return 0


def _report_stale(gen: Generator, out_dir: Path, stale: list[str]) -> int:
    for rel in stale:
        print(f"stale: {out_dir / rel}", file=sys.stderr)
    if stale:
        print(f"regenerate with: {gen.prog} --output-dir {out_dir}", file=sys.stderr)
    return 1 if stale else 0
