"""Output paths of the ``probnets`` commands, checked before any work and cleared of an earlier run's files.

``--out`` must be a folder, or a path whose first existing ancestor is a writable folder; a file there, or a
file in its way (``--out results.csv/run``), is a :class:`~probnets_app.cli.DataError` before any sampling.
A reused folder keeps the user's own files: only the files a command writes (its ``known`` outputs) are
removed, right before the new ones are written, so that no file of another run is left beside this run's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from probnets_app.cli import DataError


#: Every file ``probnets fit`` may write into ``--out`` (report, figures of either task, saved draws).
FIT_OUTPUTS = ("report.json", "predictions.png", "calibration.png", "trace.png", "posterior.pt")
#: Every file ``probnets bo`` writes into ``--out``.
BO_OUTPUTS = ("bo.json", "regret.png")


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """The output folder ``path``, after checking that it is, or can be created as, a writable folder.

    Raises:
        DataError: ``path`` is a file, lies under a file, or its nearest existing folder is not writable.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DataError(f"{option} {str(path)!r} exists and is not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{option} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{option} {str(path)!r} cannot be written: no write permission in {str(existing)!r}")
    return out


def check_file_path(path: str | os.PathLike, option: str) -> Path:
    """A file path to be written later (e.g. a checkpoint): not a folder, and its folder can be created."""
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{option} {str(path)!r} is a directory; give a file path")
    check_out_dir(file.parent if str(file.parent) else ".", option=f"the folder of {option}")
    return file


def remove_known_outputs(out: Path, known: Iterable[str]) -> list[Path]:
    """Remove the files named ``known`` from the folder ``out`` (those an earlier run of the command wrote);
    returns the removed paths. Other files are left alone."""
    removed = []
    for name in known:
        file = out / name
        if file.is_file() or file.is_symlink():
            file.unlink()
            removed.append(file)
    return removed


def finish(out: Path, report: dict, text: str, *, posterior=None, extra_files: Iterable[Path] = ()) -> int:
    """Save ``posterior`` as ``out/posterior.pt`` when given, print ``text`` and the files written; exit status 0."""
    files = [out / "report.json", *(out / name for name in report["figures"].values()), *extra_files]
    if posterior is not None:
        posterior.save(out / "posterior.pt")
        files.append(out / "posterior.pt")
    print(text)
    print("Output files:")
    for path in files:
        print(f"  {path}")
    return 0
