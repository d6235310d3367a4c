"""One place that composes ``conf/`` with Hydra and records a run next to its outputs.

The compose API (not ``@hydra.main``) keeps Typer in charge of the command line; the
price is that Hydra's run directories are ours to make, which :func:`run_dir` does.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from huberkl import __version__
from huberkl.errors import InputError

if TYPE_CHECKING:
    from omegaconf import DictConfig

# The one config directory (YAML shipped as package data): Hydra composes it here and in
# huberkl.commands.hydra_app; huberkl.params reads its presets. Hydra is imported lazily, so
# that importing this constant stays cheap (``huberkl interpret`` loads neither torch nor Hydra).
CONF_DIR = Path(__file__).resolve().parent / "conf"
OUTPUTS = Path("outputs")


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides (``key=value``), checked.

    The one compose path of every command: Hydra checks types and keys against the group
    schemas (:mod:`huberkl.schema`), then :func:`huberkl.schema.check` builds the schema
    objects, whose ``__post_init__`` checks value ranges. Any failure is one
    :class:`InputError` line naming the key.
    """
    from hydra import compose as _compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from huberkl import schema

    schema.register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = _compose(config_name=config_name, overrides=list(overrides))
        schema.check(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(schema.describe(exc, overrides)) from None
    return cfg


def default_choice(group: str, config_name: str = "config") -> str:
    """The option ``conf/<config_name>.yaml``'s defaults list picks for ``group``.

    Read with PyYAML, not Hydra, for ``huberkl interpret``'s fast path (no Hydra import):
    the root config stays the one place that says which preset is the default.
    """
    import yaml

    text = (CONF_DIR / f"{config_name}.yaml").read_text(encoding="utf-8")
    for entry in yaml.safe_load(text).get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    raise KeyError(f"conf/{config_name}.yaml has no default for group {group!r}")


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config; a value still missing (``data.root: ???``) is an InputError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    from huberkl import schema

    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:
        raise InputError(schema.describe(exc)) from None


def check_writable(path: str | Path, what: str = "--out") -> Path:
    """Refuse (InputError) a ``path`` that cannot become a folder this process writes into.

    Checked before any work or any folder, so that a bad ``--out`` is one line naming it
    rather than a traceback after minutes of work: ``path`` must be a folder, or not exist
    below a folder, and that folder must be writable. Returns ``path``.
    """
    path = Path(path)
    try:
        target = path
        if _lexists(path):
            if not path.is_dir():
                raise InputError(f"{what} {path}: is a file, not a folder; give a folder")
        else:
            target = path.parent
            while not _lexists(target) and target != target.parent:
                target = target.parent
            if not target.is_dir():
                raise InputError(f"{what} {path}: {target} is a file, not a folder; give a folder")
        writable = os.access(target, os.W_OK | os.X_OK)
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot use it ({exc.strerror or exc})") from None
    if not writable:
        where = "" if target == path else f" ({target} is not writable)"
        raise InputError(f"{what} {path}: cannot write there{where}; give a writable folder")
    return path


def _lexists(path: Path) -> bool:
    """Whether ``path`` exists (a dangling link does); a path under a file does not."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _missing(path: Path) -> list[Path]:
    """The folders above and including ``path`` that do not exist yet, outermost first."""
    missing = []
    while not _lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def run_dir(command: str, out: str | Path | None, what: str = "--out") -> Path:
    """``out`` if given, else a new ``outputs/<command>/<timestamp>`` folder; made, checked.

    An ``out`` that cannot be a writable folder is an InputError naming it (exit code 2).
    Inside :func:`undo_on_refusal`, a folder made here is removed again if the command then
    refuses its input.
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = OUTPUTS / command / stamp
        n = 1
        while path.exists():
            path = OUTPUTS / command / f"{stamp}-{n}"
            n += 1
        what = f"the default {what}"
    else:
        path = Path(out)
    check_writable(path, what)
    made = _missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # FileExistsError, NotADirectoryError, PermissionError, EROFS...
        raise InputError(
            f"{what} {path}: cannot make the folder ({exc.strerror or exc}); give a writable folder"
        ) from None
    if _journals:
        _journals[-1].append(_Folder(path, made, _entries(path)))
    return path


# ------------------------------------------------------------------ undo a refused command
#
# A command that refuses its input (InputError) must not leave a half-made run folder that
# looks like a run. Inside ``undo_on_refusal()``, run_dir remembers the folders it made and
# what the folder held; save_run and record_run remember the files they wrote and what they
# held before. On an InputError the record files are put back and the folders made are
# removed, but only when the command changed nothing else in the folder: a folder holding
# anything this invocation did not write (a checkpoint, a user's file) is left as it is.


@dataclass
class _Folder:
    path: Path
    made: list[Path]  # folders this invocation created, outermost first
    before: dict[str, tuple[bool, int, int]]  # top-level entries when run_dir returned
    files: dict[str, bytes | None] = field(default_factory=dict)  # written: what they held


_journals: list[list[_Folder]] = []


def _entries(path: Path) -> dict[str, tuple[bool, int, int]]:
    """Top-level entries of ``path``: name -> (is folder, mtime_ns, size)."""
    out = {}
    try:
        with os.scandir(path) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                out[e.name] = (e.is_dir(follow_symlinks=False), st.st_mtime_ns, st.st_size)
    except OSError:
        pass
    return out


def _journal_file(path: Path) -> None:
    """Remember what ``path`` held before this invocation first writes it (None: nothing)."""
    for journal in _journals:
        for folder in journal:
            if folder.path.absolute() == path.parent.absolute() and path.name not in folder.files:
                folder.files[path.name] = path.read_bytes() if path.is_file() else None


def _remove_empty_dirs(path: Path) -> None:
    for root, _dirs, _files in os.walk(path, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(root)  # only succeeds when empty


def _undo(folder: _Folder) -> None:
    path = folder.path
    now = _entries(path)
    for name in set(now) - set(folder.before) - set(folder.files):
        if now[name][0]:
            _remove_empty_dirs(path / name)  # an empty images/ made before the refusal
    now = _entries(path)
    changed = {
        name
        for name, entry in now.items()
        if name not in folder.files and folder.before.get(name) != entry
    }
    if changed:
        return  # the command produced something: keep the folder as it is
    for name, held in folder.files.items():
        with contextlib.suppress(OSError):
            if held is None:
                (path / name).unlink(missing_ok=True)
            else:
                (path / name).write_bytes(held)
    for made in reversed(folder.made):
        with contextlib.suppress(OSError):
            made.rmdir()  # only when empty: never a file this invocation did not write


@contextlib.contextmanager
def undo_on_refusal() -> Iterator[None]:
    """Run a command so that refusing its input (InputError) leaves no half-made run folder."""
    journal: list[_Folder] = []
    _journals.append(journal)
    try:
        yield
    except InputError:
        for folder in reversed(journal):
            _undo(folder)
        raise
    finally:
        _journals.remove(journal)


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` (remembered for :func:`undo_on_refusal`); an OSError is an InputError."""
    _journal_file(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror or exc})") from None


def save_run(
    cfg: DictConfig,
    out_dir: Path,
    command: str,
    overrides: Sequence[str] = (),
    resumed: bool = False,
) -> None:
    """Write ``config.yaml`` (resolved) and ``run.json`` (seed, argv, versions) to rerun exactly.

    ``resumed``: the folder holds a run that this invocation continues; its ``run.json``
    keeps how the run was started (the resume command may give no overrides at all) and
    gains a ``resumed`` entry with this invocation's argv and overrides.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make {out_dir} ({exc.strerror or exc})") from None
    _write_text(out_dir / "config.yaml", to_yaml(cfg))
    now = _dt.datetime.now().isoformat(timespec="seconds")
    this = {"overrides": list(overrides), "argv": sys.argv, "started": now}
    info: dict = {}
    if resumed:
        info = _read_info(out_dir / "run.json")
    if info:
        info["resumed"] = [*info.get("resumed", []), this]
    else:
        info = {
            "command": command,
            "seed": cfg.get("seed"),
            "overrides": this["overrides"],
            "argv": this["argv"],
            "huberkl": __version__,
            "python": platform.python_version(),
            "host": platform.node(),
            "started": now,
            "cwd": os.getcwd(),
        }
    _write_text(out_dir / "run.json", json.dumps(info, indent=2) + "\n")


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def record_run(out_dir: Path, **fields: object) -> None:
    """Add ``fields`` to ``run.json`` (made if missing): what a run found out while it ran."""
    path = Path(out_dir) / "run.json"
    info = _read_info(path) if path.is_file() else {}
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    _journal_file(path)
    tmp = path.with_name(".run.json.tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
