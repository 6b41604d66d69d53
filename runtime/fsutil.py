"""Filesystem primitives for folders that other people and programs write into.

A watched folder is shared ground: anyone who can write there can plant a symlink, a FIFO, a
loop or a name too long for the disk. Every path below a trusted root is therefore opened one
component at a time, by file descriptor, with O_NOFOLLOW: a symlink anywhere on the way (also
one swapped in after a check) is refused by the kernel instead of followed out of the tree.
Writes go to a temporary name in the same folder descriptor and are renamed into place, so a
reader never sees half a file and a kill leaves only a temporary that the next run sweeps.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import sqlite3
import stat as stat_module
import sys
from pathlib import Path, PurePosixPath

# What the kernel allows for one name, in bytes (ext4, xfs, btrfs, tmpfs, NTFS via ntfs3...).
NAME_MAX_BYTES = 255
TEMP_SUFFIX = ".tmp"
# `.<name>.<pid>-<8 hex>.tmp`: what a temporary adds to the name it stands for.
TEMP_OVERHEAD_BYTES = len(".") + len(".") + 7 + len("-") + 8 + len(TEMP_SUFFIX)

def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# What we write gets the permissions any new file of this process would (0644 under the usual
# umask 022), not a temporary file's 0600.
FILE_MODE = _file_mode()

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = (os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


class UnsafePath(Exception):
    """A path that would leave its root, pass through a symlink, or is not what it claims."""


def utf8_cap(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `max_bytes`, cut between
    characters (filesystems count a name's limit in bytes, not characters)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def display_name(name: str | bytes | os.PathLike) -> str:
    """The one rule for a name that comes from a filesystem: it is opened as the OS gave it (a
    str with surrogateescape, or bytes), and it is shown, hashed and recorded (logs, JSON
    records, Markdown, error files, the watch state) as its bytes read as UTF-8, every byte that
    is not UTF-8 written as `\\xNN` (`caf\\xe9 notes.txt`). A UTF-8 name shows as it is, so the
    records of every name that was fine before are unchanged; and the form always encodes,
    where the raw name would raise UnicodeEncodeError in json, sqlite or a log file.

    The form is not one-to-one: a name that spells `\\xe9` with a real backslash shows like one
    holding the byte 0xE9, and is then taken for the same source. Their outputs' stems differ
    (outputs.safe_stem keeps `xe9` and turns the byte into `_`) unless the name also has a
    backslash after that byte: a name made for the purpose, never one a recorder writes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_disk_full(e: BaseException) -> bool:
    """A write that failed for lack of space (or quota): from the OS, from SQLite, or one of our
    errors that carries the OS error's number."""
    if isinstance(e, sqlite3.Error):
        return getattr(e, "sqlite_errorcode", None) == 13 or "disk is full" in str(e)  # SQLITE_FULL
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)


def os_error_hint(e: OSError) -> str:
    """What went wrong and what to do about it, in a few words, for one-line errors."""
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space and run again)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (check the permissions, or choose another folder)"
    if code == errno.EROFS:
        return "the filesystem is read-only (choose another folder)"
    if code == errno.ENAMETOOLONG:
        return "the name is too long for the filesystem (rename the file)"
    if code == errno.ELOOP:
        return "too many levels of symbolic links (remove the symlink loop)"
    if code == errno.ENOTDIR:
        return "a part of the path is not a folder"
    return e.strerror or str(e)


def inside(root: Path, path: Path) -> bool:
    """Whether `path` is `root` or below it (both real paths)."""
    return path == root or root in path.parents


def relative_parts(root: Path, real: Path) -> tuple[str, ...]:
    if not inside(root, real):
        raise UnsafePath(f"it resolves to {real}, outside {root}: a symlink leads out")
    return PurePosixPath(real.relative_to(root).as_posix()).parts if real != root else ()


def open_dir(root: Path, parts: tuple[str, ...] = (), *, create: bool = False) -> int:
    """A descriptor for root/parts..., opened component by component without following any
    symlink; with `create`, missing folders are made (0777 less the umask)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise UnsafePath(f"{root}: path component {part!r}")
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise UnsafePath(f"{part!r} under {root} is a symlink or not a folder") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(dir_fd: int, name: str) -> int:
    """Open `name` in a folder descriptor for reading: never through a symlink, never blocking
    (a FIFO would hang a reader), and only if it is a regular file."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(f"{name!r} is a symlink") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode):
            raise UnsafePath(f"{name!r} is not a regular file")
        # Back to blocking reads: O_NONBLOCK was only there to keep open() off a FIFO.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, else None (missing, a symlink,
    not a regular file, too large, unreadable)."""
    try:
        fd = open_regular(dir_fd, name)
    except (OSError, UnsafePath):
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def temp_name(name: str) -> str:
    """The temporary a write of `name` goes through; the writer's pid is in it so a later run
    can tell a dead writer's leftover from a live one's work in progress."""
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def temp_writer_pid(temp: str) -> int | None:
    """The pid recorded in a temporary's name by temp_name(), or None."""
    if not (temp.startswith(".") and temp.endswith(TEMP_SUFFIX)):
        return None
    tail = temp[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
    pid, _, token = tail.partition("-")
    return int(pid) if pid.isdigit() and len(token) == 8 else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def write_temp(dir_fd: int, name: str, data: bytes, mode: int) -> str:
    """Write `data` to a new temporary for `name` in the folder, fsynced; returns its name."""
    temp = temp_name(name)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                 | getattr(os, "O_NOFOLLOW", 0), mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask; outputs keep `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(dir_fd, temp)
        raise
    os.close(fd)
    return temp


def unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def fsync_dir(dir_fd: int) -> None:
    try:
        os.fsync(dir_fd)
    except OSError:  # some filesystems refuse fsync on folders; the data is already safe
        pass


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, rename over it, then fsync the folder
    so the rename itself survives a power cut (fsutil's writer, for a path of the caller's)."""
    path = Path(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        temp = write_temp(folder, path.name, text.encode("utf-8"), FILE_MODE)
        try:
            os.replace(temp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            unlink_quietly(folder, temp)
            raise
        fsync_dir(folder)
    finally:
        os.close(folder)


HASH_CHUNK = 1 << 20  # big enough that hashing runs at memory speed, small enough to never matter


def hash_stream(stream, digest=None):
    """`digest` (a new sha256 by default) updated with everything left in a binary stream, a
    chunk at a time: a 50 GB file never sits in memory."""
    digest = hashlib.sha256() if digest is None else digest
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
    return digest


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hash_stream(f).hexdigest()


@contextlib.contextmanager
def stderr_silenced():
    """Silence C code writing to file descriptor 2 (llama.cpp's loader and quantizer print there
    whatever its log callback says); Python's sys.stderr is flushed first."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
