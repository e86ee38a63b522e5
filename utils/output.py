"""Writing a command's output safely: all or nothing, never over the user's data.

A command that writes ``OUT`` (``prepare --out OUT``, and any other command of this toolkit) does it in
three steps, with :class:`StagedOutput`::

    with StagedOutput(out, inputs=paths, overwrite=args.overwrite, command="prepare") as stage:
        dataset.save_to_disk(str(stage.path))      # write the new output here (a directory)
        work = stage.workdir                       # scratch space on the same file system (caches)
        stage.commit()                             # OUT appears, complete, in one atomic step

1. **Check** (:func:`check_output`, before any work and again at commit time): ``OUT`` must not be,
   contain or lie inside an input; every existing ancestor must be a directory; an existing ``OUT`` is
   replaced only with ``overwrite=True`` and only if it is a directory an earlier run of this toolkit
   wrote (:func:`is_our_output`: the marker file :data:`MARKER`, or an older ``prepare`` output:
   ``stats.json`` beside ``datasets``' ``state.json``) or an empty directory. A file is never replaced.
2. **Stage**: everything is written into a hidden temporary folder beside ``OUT``
   (``.OUT.tmp-PID-XXXXXXXX``, same file system, so the final rename cannot copy). It holds an owner
   record (``owner.json``: host, process id and start time), so a later run can tell a folder left by a
   killed process (``kill -9``, power loss) from one another run is using: :func:`clean_stale` removes
   the stale ones (it runs when a :class:`StagedOutput` starts) and reports the others.
3. **Commit** (:meth:`StagedOutput.commit`): the files are flushed to disk (``fsync``), the checks run
   again (an ``OUT`` that appeared meanwhile -- another run -- is never replaced without ``overwrite``),
   and the staged folder becomes ``OUT`` by one rename that refuses to replace anything
   (:func:`rename_noreplace`: Linux ``renameat2(RENAME_NOREPLACE)``, macOS ``renamex_np(RENAME_EXCL)``;
   elsewhere a rename that fails on a non-empty target). With ``overwrite`` the new and old folders are
   swapped in one step (:func:`exchange`: ``RENAME_EXCHANGE`` / ``RENAME_SWAP``) and the old one, now in
   the temporary folder, is deleted; there is no moment without a complete ``OUT``. Where the file
   system cannot swap, the old ``OUT`` is moved into the temporary folder first and a run that finds it
   there after a crash puts it back.

Leaving the ``with`` block without :meth:`~StagedOutput.commit` (an error, Ctrl-C) removes the temporary
folder and any parent folders it created: nothing is left behind.

Problems raise :class:`OutputError` (``str``: what is wrong and what to do; ``status``: 2 for a usage
problem such as an ``OUT`` that is the input, 1 for a failure while working). :func:`describe_os_error`
turns an ``OSError`` met while writing (disk full, read-only file system, permission denied) into one
such sentence naming the path.

Example:
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with StagedOutput(root / "out", command="example") as stage:
    ...     stage.path.mkdir()
    ...     _ = (stage.path / "data.txt").write_text("hello")
    ...     out = stage.commit()
    >>> sorted(p.name for p in out.iterdir()), is_our_output(out)
    (['.utils-output.json', 'data.txt'], True)
    >>> check_output(root / "out")
    Traceback (most recent call last):
    ...
    utils.output.OutputError: ... already exists; choose another --out or pass --overwrite to replace it
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["MARKER", "OWNER", "OutputError", "StagedOutput", "ScratchDir", "check_output", "is_our_output",
           "clean_stale", "rename_noreplace", "exchange", "describe_os_error"]

MARKER = ".utils-output.json"
"""File that :meth:`StagedOutput.commit` writes into every output folder: which command wrote it, when."""
OWNER = "owner.json"
"""File in each temporary folder: the host, process id and process start time of the run that owns it."""
_TMP = ".tmp-"


class OutputError(Exception):
    """``OUT`` cannot be written (``str``: what and what to do); ``status`` 2 (usage) or 1 (failure)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


# ---- checks -------------------------------------------------------------------------------------

def is_our_output(path: str | os.PathLike) -> bool:
    """Is ``path`` a folder this toolkit wrote (its :data:`MARKER`, or an older ``prepare`` output)?

    >>> import tempfile
    >>> is_our_output(tempfile.mkdtemp())
    False
    """
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / MARKER).is_file():
        return True
    # outputs of prepare before the marker existed: datasets' save_to_disk files plus our stats.json
    return all((path / name).is_file() for name in ("stats.json", "state.json", "dataset_info.json"))


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *, overwrite: bool = False,
                 option: str = "--out", what: str = "directory") -> Path:
    """``out`` as a ``Path`` if a command may write it; else :class:`OutputError` saying why.

    Refused: an ``out`` that is one of ``inputs``, holds one (replacing it would delete the input) or lies
    inside one; an ancestor that is a file; an existing ``out`` without ``overwrite``; an existing file
    (``what="directory"``), or a non-empty folder no run of this toolkit wrote, even with ``overwrite``.
    ``option`` names the command-line option in messages.

    >>> check_output("data.jsonl", ["data.jsonl"])
    Traceback (most recent call last):
    ...
    utils.output.OutputError: --out data.jsonl is the input file data.jsonl; writing there would destroy it: choose another --out
    """
    out = Path(out)
    real = os.path.realpath(out)
    for source in inputs:
        src = os.path.realpath(source)
        if real == src:
            raise OutputError(f"{option} {out} is the input file {source}; writing there would destroy it: "
                              f"choose another {option}")
        if _inside(src, real):
            raise OutputError(f"{option} {out} holds the input file {source}; replacing it would delete your data: "
                              f"choose another {option}")
        if _inside(real, src):
            raise OutputError(f"{option} {out} lies inside the input {source}: choose another {option}")
    ancestor = out.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if os.path.lexists(ancestor) and not ancestor.is_dir():
        raise OutputError(f"{option} {out}: {ancestor} is a file, not a directory: choose another {option}")
    if not os.path.lexists(out):
        return out
    if what == "directory" and (not out.is_dir() or out.is_symlink()):
        raise OutputError(f"{option} {out} is an existing {'symbolic link' if out.is_symlink() else 'file'}, not "
                          f"an output directory; it is never replaced: choose another {option}")
    if not overwrite:
        raise OutputError(f"{out} already exists; choose another {option} or pass --overwrite to replace it")
    if what == "directory" and any(out.iterdir()) and not is_our_output(out):
        raise OutputError(f"{out} exists and is not an output of this toolkit (no {MARKER} or stats.json in it); "
                          f"--overwrite only replaces earlier outputs, so your files there stay: remove it "
                          f"yourself or choose another {option}")
    return out


# ---- atomic renames -----------------------------------------------------------------------------

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # linux/fs.h
_RENAME_SWAP, _RENAME_EXCL = 2, 4  # macOS sys/stdio.h
_AT_FDCWD = -100


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith(("linux", "darwin")) else None


def _rename_flags(src: str, dst: str, flags: int) -> bool:
    """The system's rename with flags; False when the system or the file system has no such call."""
    if _LIBC is None:
        return False
    if sys.platform.startswith("linux"):
        function = getattr(_LIBC, "renameat2", None)
        args = (_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
        if function is not None:
            function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    else:
        function = getattr(_LIBC, "renamex_np", None)
        flags = {_RENAME_NOREPLACE: _RENAME_EXCL, _RENAME_EXCHANGE: _RENAME_SWAP}[flags]
        args = (os.fsencode(src), os.fsencode(dst), flags)
        if function is not None:
            function.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint)
    if function is None:
        return False
    if function(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # no such call here, or this file system cannot do it
    raise OSError(code, os.strerror(code), src, None, dst)


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst``, failing with ``FileExistsError`` if ``dst`` exists (never replacing it).

    Atomic where the system has it (Linux ``renameat2``, macOS ``renamex_np``); elsewhere ``os.rename``,
    which for a folder fails on an existing non-empty ``dst`` (POSIX) or any ``dst`` (Windows).
    """
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        if _rename_flags(src, dst, _RENAME_NOREPLACE):
            return
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "already exists", dst) from None
        raise
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "already exists", dst)
    try:
        os.rename(src, dst)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, "already exists", dst) from None
        raise


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step; False (nothing done) where the system cannot."""
    return _rename_flags(os.fspath(a), os.fspath(b), _RENAME_EXCHANGE)


# ---- temporary folders with an owner ------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    """A process's start time (Linux: clock ticks since boot), to tell a reused process id; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else fields[19].decode()  # a zombie has finished


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if os.path.isdir("/proc/self"):
        now = _start_time(pid)
        if now is None:
            return False  # gone, or a zombie
        return start is None or now == start
    return True


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _stale(folder: Path) -> tuple[bool, str]:
    """``(stale, who)``: may ``folder`` (one of our temporary folders) be removed, and whose it is."""
    try:
        owner = json.loads((folder / OWNER).read_text(encoding="utf-8"))
        host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        # killed before it wrote its owner record: the process id is in the name
        tail = folder.name.rsplit(_TMP, 1)[-1].split("-")[0]
        if not tail.isdigit():
            return False, "an unknown run (no owner record; made by an older version?)"
        host, pid, start = socket.gethostname(), int(tail), None
    if host != socket.gethostname():
        return False, f"process {pid} on host {host}"
    return not _alive(pid, start), f"process {pid}"


def _temp_folders(parent: Path, prefix: str) -> list[Path]:
    try:
        return sorted(p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def clean_stale(parent: str | os.PathLike, prefix: str, restore_to: str | os.PathLike | None = None,
                report: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temporary folders ``parent/prefix*`` whose owner process has ended; return those removed.

    Folders of a running process (another run writing the same output) and folders whose owner cannot be
    told (another host, an older version) are kept and reported. A stale folder that holds the previous
    output (``old``, moved there by a replacement that was interrupted where the file system cannot swap)
    is put back at ``restore_to`` when nothing is there. ``report`` receives one sentence per folder.
    """
    parent = Path(parent)
    say = report or (lambda message: None)
    removed = []
    for folder in _temp_folders(parent, prefix):
        stale, who = _stale(folder)
        if not stale:
            say(f"note: {folder} belongs to {who}, which may still be running; left as it is "
                "(remove it yourself if no other run is writing there)")
            continue
        old = folder / "old"
        if restore_to is not None and old.is_dir() and not os.path.lexists(restore_to):
            try:
                rename_noreplace(old, restore_to)
                say(f"note: restored {restore_to} from {folder} (a replacement by {who} was interrupted)")
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
            say(f"note: removed {folder}, a temporary folder left by {who}, which ended before finishing")
    return removed


class ScratchDir:
    """A temporary folder with an owner record, removed on exit; stale ones of the same prefix are cleaned.

    ``with ScratchDir(prefix="utils-stats-") as path:`` (in the system's temporary folder by default).
    """

    def __init__(self, parent: str | os.PathLike | None = None, prefix: str = "utils-", *,
                 report: Callable[[str], None] | None = None, restore_to: str | os.PathLike | None = None):
        import tempfile

        self.parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        self.prefix = prefix
        self.report = report
        self.restore_to = restore_to
        self.path: Path | None = None

    def create(self, clean: bool = True) -> Path:
        """Make the folder (after removing stale ones of the same prefix, unless ``clean=False``)."""
        if clean:
            clean_stale(self.parent, self.prefix, self.restore_to, self.report)
        path = self.parent / f"{self.prefix}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        self.path = path
        (path / OWNER).write_text(json.dumps(_owner()) + "\n", encoding="utf-8")
        return path

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def __enter__(self) -> Path:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.remove()


# ---- the staged output --------------------------------------------------------------------------

def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk (the data must be there before the rename)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(folder)


def _fsync_dir(folder: str | os.PathLike) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder
    finally:
        os.close(fd)


class _deferred_signals:
    """Hold SIGINT / SIGTERM until the block ends (then raise as they would have); main thread only."""

    def __enter__(self):
        import signal
        import threading

        self.caught: list = []
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
                if sig is not None:
                    self.saved[sig] = signal.signal(sig, lambda signum, frame: self.caught.append((signum, frame)))
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        for signum, frame in self.caught[:1]:
            handler = self.saved.get(signum)
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
        return False


class StagedOutput:
    """Write ``out`` all or nothing (see the module docstring): ``path`` to write into, ``workdir`` for
    scratch files, :meth:`commit` to publish. ``inputs`` are the files the command reads (``out`` must
    not touch them); ``report`` receives notes about stale temporary folders (default: standard error).

    ``what="directory"`` (default): ``path`` is a folder-to-be (the command creates it, e.g. with
    ``Dataset.save_to_disk``), and the :data:`MARKER` is added at commit. ``what="file"``: ``path`` is a
    file-to-be, and an existing file at ``out`` is replaced only with ``overwrite`` (a file holds no
    marker; ``out`` still must not be an input).
    """

    def __init__(self, out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *, overwrite: bool = False,
                 command: str = "utils", option: str = "--out", what: str = "directory",
                 report: Callable[[str], None] | None = None):
        self.out = Path(out)
        self.inputs = [Path(p) for p in inputs]
        self.overwrite = overwrite
        self.command = command
        self.option = option
        self.what = what
        self.report = report if report is not None else (lambda message: print(message, file=sys.stderr))
        self.committed = False
        self._scratch: ScratchDir | None = None
        self._made: list[Path] = []

    def _check(self) -> None:
        check_output(self.out, self.inputs, overwrite=self.overwrite, option=self.option, what=self.what)

    def __enter__(self) -> "StagedOutput":
        self._scratch = ScratchDir(self.out.absolute().parent, f".{self.out.name}{_TMP}", report=self.report,
                                   restore_to=self.out)
        # first the leftovers of killed runs (which may put back an interrupted replacement's old output)
        clean_stale(self._scratch.parent, self._scratch.prefix, self.out, self.report)
        self._check()
        parent = self.out.absolute().parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._made.append(folder)
        try:
            root = self._scratch.create(clean=False)
        except BaseException:
            self._remove_made()
            raise
        (root / "work").mkdir()
        return self

    @property
    def root(self) -> Path:
        assert self._scratch is not None and self._scratch.path is not None, "use StagedOutput in a with block"
        return self._scratch.path

    @property
    def path(self) -> Path:
        """Where to write the new output (does not exist yet)."""
        return self.root / "new"

    @property
    def workdir(self) -> Path:
        """Scratch space beside the output (same file system), removed with the temporary folder."""
        return self.root / "work"

    def commit(self) -> Path:
        """Publish :attr:`path` as ``out`` (see the module docstring); returns ``out``."""
        new, out = self.path, self.out
        if not os.path.lexists(new):
            raise OutputError(f"nothing was written for {out}", status=1)
        if self.what == "directory":
            (new / MARKER).write_text(json.dumps({"command": self.command, "written": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z")}) + "\n", encoding="utf-8")
            _fsync_tree(new)
        else:
            _fsync_tree(self.root)
        try:
            self._check()
        except OutputError as error:
            raise OutputError(f"{error} (it changed while this run was working: another run writing the same "
                              f"{self.option}?); nothing written", 1) from None
        with _deferred_signals():  # Ctrl-C waits until the rename is done and recorded
            if not os.path.lexists(out):
                try:
                    rename_noreplace(new, out)
                except FileExistsError:
                    raise OutputError(f"{out} appeared while this run was working (another run writing the same "
                                      f"{self.option}?); it was left untouched and nothing was written", 1) from None
            else:
                self._replace(new, out)
            self.committed = True
        _fsync_dir(out.absolute().parent)
        return out

    def _replace(self, new: Path, out: Path) -> None:
        if exchange(new, out):
            # ``new`` now holds what was at ``out``: delete it only if it is what the check allowed
            if self.what == "directory" and any(new.iterdir()) and not is_our_output(new):
                exchange(new, out)
                raise OutputError(f"{out} was replaced by something else while this run was working; it was put "
                                  "back and nothing was written", 1)
            return
        old = self.root / "old"
        os.rename(out, old)  # a crash now leaves the old output in the temporary folder: clean_stale restores it
        try:
            rename_noreplace(new, out)
        except BaseException:
            rename_noreplace(old, out)
            raise

    def _remove_made(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def __exit__(self, *exc) -> None:
        if self._scratch is not None:
            self._scratch.remove()
        if not self.committed:
            self._remove_made()


# ---- messages -----------------------------------------------------------------------------------

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _errno_of(error: OSError) -> int | None:
    if error.errno:
        return error.errno
    text = str(error)  # pyarrow's OSError carries the errno in its text only
    for code in (*_NO_SPACE, errno.EROFS, errno.EACCES):
        if f"errno {code}]" in text.lower() or os.strerror(code) in text:
            return code
    return None


def describe_os_error(error: OSError, out: str | os.PathLike, option: str = "--out",
                      advice: str | None = None) -> str | None:
    """One sentence for an ``OSError`` met while writing ``out`` (disk full, read-only, permission denied),
    naming the nearest existing folder; None for other errors. ``advice`` replaces "choose another --out".

    >>> import errno
    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "out/ds")
    'no space left on the device that holds . (writing out/ds); nothing was written: free some space or choose another --out'
    """
    code = _errno_of(error)
    where = Path(out).parent
    while not os.path.lexists(where) and where != where.parent:
        where = where.parent
    other = advice or f"choose another {option}"
    if code in _NO_SPACE:
        return f"no space left on the device that holds {where} (writing {out}); nothing was written: free some " \
               f"space or {other}"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system (writing {out}); nothing was written: {other}"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied writing in {where} (for {out}); nothing was written: {other} or check the " \
               "folder's permissions"
    return None
