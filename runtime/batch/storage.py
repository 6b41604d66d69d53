"""Where a batch reads transcripts and writes summaries: local paths, or any filesystem URI that
pyarrow understands (`s3://bucket/prefix`, `gs://...`, `hdfs://...`, `file:///...`).

A local path goes through the same code as `sumctl summarize`: outputs.OutputFolder, which
writes temporaries, fsyncs and renames, and never follows a symlink planted under DEST. A URI
goes through `ArrowFolder`, the same interface over a pyarrow filesystem, so naming
(outputs.claim_stem) and writing (outputs.write_summary) are shared: each file is written to a
temporary name and moved into place (a rename on a local or HDFS filesystem; on an object
store, a copy that makes the object appear whole). pyarrow is imported only for a URI.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sumctl.runtime.errors import InputError, OutputError, SumctlError
from sumctl.runtime.fsutil import display_name, temp_name, temp_writer_pid
from sumctl.runtime.outputs import (RECORD_MAX_BYTES, OutputFolder, OutputPlace, parse_error_owner, parse_record,
                                    output_place, safe_stem, sumctl_output_kind)
from sumctl.runtime.watch.config import DEFAULT_INCLUDE
from sumctl.runtime.watch.discovery import is_our_temp, may_be_ours, skip_reason, sweep_temp

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")
RECORD_DIR = (".sumctl", "done")  # done-records, beside the outputs they vouch for
_FILESYSTEMS: dict[str, object] = {}
PYARROW_HINT = "pip install 'sumctl[ray]' (or pip install pyarrow)"


def is_uri(text: str | os.PathLike) -> bool:
    return isinstance(text, str) and _URI.match(text) is not None


def filesystem(uri: str):
    """(pyarrow filesystem, path in it) for a URI. Filesystems are made once per URI and process:
    a job names the SOURCE or DEST it came from, and every file under it shares one client."""
    try:
        from pyarrow import fs as pafs
    except ModuleNotFoundError:
        raise SumctlError(f"{uri}: a filesystem URI needs pyarrow: {PYARROW_HINT}") from None
    cached = _FILESYSTEMS.get(uri)
    if cached is not None:
        return cached
    try:
        found = pafs.FileSystem.from_uri(uri)
    except Exception as e:  # ArrowInvalid (an unknown scheme), OSError (no credentials)...
        raise SumctlError(f"{uri}: not a filesystem pyarrow can open ({e})") from None
    _FILESYSTEMS[uri] = found
    return found


def uri_prefix(uri: str, path: str) -> str:
    """What goes before a path of `uri`'s filesystem to name it as a URI again: `s3://` for
    s3://bucket/key (whose path is bucket/key), `file://` for file:///tmp/x."""
    bare = uri.split("?", 1)[0].rstrip("/")
    path = path.rstrip("/")
    if path and bare.endswith(path):
        return bare[: len(bare) - len(path)]
    return bare.split("://", 1)[0] + "://"


# --- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """One transcript of the batch.

    fs_uri is None for a local file, else the SOURCE URI whose filesystem holds `path`. `name`
    is what its summary calls it (`sumctl summarize` records the path it was given: here the
    absolute path, or the full URI). `root` is the folder whose tree DEST mirrors."""

    fs_uri: str | None
    path: str
    name: str
    root: str


def list_sources(specs: list[str], *, recursive: bool = False,
                 include: tuple[str, ...] = DEFAULT_INCLUDE) -> list[SourceFile]:
    """Every transcript that SOURCE... names, in order, each once: files as given, folders'
    transcripts (by --include, hidden names, temporaries and sumctl's own outputs left out;
    subfolders with `recursive`), and glob patterns' matching files."""
    found: list[SourceFile] = []
    seen: set[str] = set()
    for spec in specs:
        lister = _list_uri if is_uri(spec) else _list_local
        listed = lister(spec, recursive, include)
        if not listed:
            raise InputError(f"{spec}: no transcripts found there"
                             + ("" if recursive else " (add --recursive for subfolders)"))
        for source in listed:
            identity = source.name if source.fs_uri else os.path.realpath(source.path)
            if identity not in seen:
                seen.add(identity)
                found.append(source)
    return found


def _wanted(rel: PurePosixPath, include: tuple[str, ...]) -> bool:
    return skip_reason(rel, include, ()) is None


def _list_local(spec: str, recursive: bool, include: tuple[str, ...]) -> list[SourceFile]:
    path = Path(spec).expanduser()
    if path.is_file():
        absolute = os.path.abspath(path)
        return [SourceFile(None, absolute, display_name(absolute),
                           os.path.realpath(os.path.dirname(absolute)))]
    if path.is_dir():
        root = os.path.realpath(path)
        files = []
        for dirpath, dirnames, filenames in os.walk(os.path.abspath(path)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = PurePosixPath(Path(os.path.relpath(full, path)).as_posix())
                if _wanted(rel, include) and os.path.isfile(full) and not _ours(full):
                    files.append(SourceFile(None, full, display_name(full), root))
        return files
    if _GLOB.search(spec):
        base = _glob_base(spec)
        root = os.path.realpath(base)
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=recursive))
        return [SourceFile(None, os.path.abspath(m), display_name(os.path.abspath(m)), root)
                for m in matches if os.path.isfile(m) and not _ours(m)]
    raise InputError(f"{spec}: no such file or folder")


def _ours(path: str) -> bool:
    """A summary or error file that sumctl wrote (by its content, as `sumctl watch` judges)."""
    folder, name = os.path.split(os.path.abspath(path))
    if not may_be_ours(name):
        return False
    with OutputFolder(folder, create=False) as handle:
        return sumctl_output_kind(handle, name) is not None


def _glob_base(pattern: str) -> str:
    """The folder a glob pattern starts from: its components before the first wildcard."""
    parts = PurePosixPath(os.path.expanduser(pattern)).parts
    kept = []
    for part in parts[:-1]:
        if _GLOB.search(part):
            break
        kept.append(part)
    return str(PurePosixPath(*kept)) if kept else "."


def _list_uri(spec: str, recursive: bool, include: tuple[str, ...]) -> list[SourceFile]:
    from pyarrow import fs as pafs

    fs, path = filesystem(spec)
    prefix = uri_prefix(spec, path)
    try:
        if _GLOB.search(path):
            base = _glob_base(path)
            selector = pafs.FileSelector(base, recursive=recursive or "**" in path, allow_not_found=True)
            infos = [i for i in fs.get_file_info(selector)
                     if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path)]
            root = base
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{spec}: no such file or folder")
            if info.type == pafs.FileType.File:
                parent = path.rstrip("/").rpartition("/")[0]
                return [SourceFile(spec, path, prefix + path, parent)]
            infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
                     if i.type == pafs.FileType.File]
            root = path
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{spec}: cannot list it ({e})") from None
    files = []
    for info in sorted(infos, key=lambda i: i.path):
        rel = PurePosixPath(info.path[len(root):].lstrip("/"))
        # Without a cheap look inside, anything named like our outputs is taken to be ours.
        if _wanted(rel, include) and not may_be_ours(rel.name):
            files.append(SourceFile(spec, info.path, prefix + info.path, root))
    return files


def read_source(source: SourceFile, max_bytes: int) -> bytes:
    """A transcript's bytes, at most max_bytes (one more byte is read, so the parser can say
    it is over the cap)."""
    try:
        if source.fs_uri is None:
            with open(source.path, "rb") as f:
                return f.read(max_bytes + 1)
        fs, _ = filesystem(source.fs_uri)
        with fs.open_input_stream(source.path) as f:
            return f.read(max_bytes + 1)
    except PermissionError:
        raise InputError(f"{source.name}: permission denied (check the file's permissions)") from None
    except FileNotFoundError:
        raise InputError(f"{source.name}: not found (removed since the batch was planned)") from None
    except OSError as e:
        raise InputError(f"{source.name}: cannot read ({e.strerror or e})") from None


# --- destinations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """DEST: a local folder (fs_uri None, path its real path) or a URI's filesystem and path."""

    fs_uri: str | None
    path: str

    @classmethod
    def open(cls, spec: str | os.PathLike) -> "Destination":
        """DEST, made if missing."""
        if is_uri(spec):
            fs, path = filesystem(str(spec))
            try:
                fs.create_dir(path, recursive=True)
            except Exception as e:
                raise OutputError(f"{spec}: cannot create the output folder ({e})") from None
            return cls(str(spec), path.rstrip("/") or "/")
        try:
            Path(spec).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError.from_os_error(Path(spec), e, "cannot create the output folder") from None
        return cls(None, os.path.realpath(Path(spec).expanduser()))

    @contextmanager
    def lock(self):
        """One batch at a time writes a local DEST: a second is refused while the first runs
        (an flock, released by the kernel when its holder dies). A URI's DEST has no lock."""
        if self.fs_uri is not None:
            yield
            return
        import fcntl

        folder = Path(self.path, RECORD_DIR[0])
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / "batch.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise OutputError(f"{self.path}: another sumctl batch (pid {holder}) is writing "
                                  "there; wait for it, or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def place(self, source: SourceFile) -> OutputPlace:
        """Where a source's outputs go: its folder's place under its SOURCE's root, mirrored
        under DEST, as outputs.output_place puts them for `summarize --out` and `watch --out`
        (a local source's key is its real path; a URI's key is the URI)."""
        if source.fs_uri is None and self.fs_uri is None:
            return output_place(Path(source.path), out=Path(self.path), root=Path(source.root))
        if source.fs_uri is None:
            parent = os.path.realpath(os.path.dirname(source.path))
            rel = os.path.relpath(parent, source.root)
            key = display_name(os.path.realpath(source.path))
        else:
            rel = source.path.rpartition("/")[0][len(source.root):].strip("/") or "."
            key = source.name
        rel = "" if rel == "." or rel.startswith("..") else PurePosixPath(Path(rel).as_posix()).as_posix()
        folder = self.path if not rel else f"{self.path.rstrip('/')}/{rel}"
        return OutputPlace(Path(folder), safe_stem(PurePosixPath(source.path).name), key)

    def folder(self, path: str | os.PathLike, *, create: bool = True):
        """An output folder under DEST: an OutputFolder opened without following symlinks from
        DEST down, or an ArrowFolder."""
        if self.fs_uri is None:
            return OutputFolder(path, within=Path(self.path), create=create)
        return ArrowFolder(self.fs_uri, str(path), create=create)

    def records(self, folder: str | os.PathLike, *, create: bool = True):
        """The folder of done-records beside a folder of outputs."""
        return self.folder(PurePosixPath(str(folder), *RECORD_DIR), create=create)

    def sweep(self) -> int:
        """Remove the temporaries that a killed run left under DEST (of outputs and of
        done-records). A local one goes at once when its writer's pid is dead, else once it is a
        minute old (watch's sweep_temp). Under a URI each one goes: one batch at a time writes a
        DEST, and the writers' pids belong to other machines. Returns how many were seen."""
        seen = 0
        if self.fs_uri is None:
            for dirpath, _, filenames in os.walk(self.path):
                in_records = Path(dirpath).parts[-len(RECORD_DIR):] == RECORD_DIR
                for name in filenames:
                    if is_our_temp(name) or (in_records and temp_writer_pid(name) is not None):
                        seen += 1
                        sweep_temp(Path(dirpath) / name)
            return seen
        from pyarrow import fs as pafs

        fs, _ = filesystem(self.fs_uri)
        for info in fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True)):
            name = info.base_name
            in_records = PurePosixPath(info.path).parent.parts[-len(RECORD_DIR):] == RECORD_DIR
            if info.type == pafs.FileType.File and (
                    is_our_temp(name) or (in_records and temp_writer_pid(name) is not None)):
                seen += 1
                try:
                    fs.delete_file(info.path)
                except OSError:
                    pass
        return seen


class ArrowFolder:
    """outputs.OutputFolder's interface over a pyarrow filesystem: what claim_stem and
    write_summary need (path, exists, read_record, error_owner, write_set, remove)."""

    def __init__(self, fs_uri: str, path: str, *, create: bool = True):
        self.fs, _ = filesystem(fs_uri)
        self.base = str(path).rstrip("/")
        self.real = PurePosixPath(self.base)
        if create:
            try:
                self.fs.create_dir(self.base, recursive=True)
            except Exception as e:
                raise OutputError(f"{self.base}: cannot create the output folder ({e})") from None

    def __enter__(self) -> "ArrowFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def path(self, name: str) -> PurePosixPath:
        return self.real / name

    def _key(self, name: str) -> str:
        return f"{self.base}/{name}"

    def exists(self, name: str) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(self._key(name)).type != pafs.FileType.NotFound

    def _read(self, name: str, limit: int) -> bytes | None:
        try:
            with self.fs.open_input_stream(self._key(name)) as f:
                data = f.read(limit + 1)
        except Exception:  # missing, a folder, unreadable
            return None
        return data if len(data) <= limit else None

    def read_record(self, name: str) -> dict | None:
        return parse_record(self._read(name, RECORD_MAX_BYTES))

    def error_owner(self, name: str) -> str | None:
        data = self._read(name, 1 << 20)
        return None if data is None else parse_error_owner(data)

    def write_set(self, files: dict[str, str]) -> list[PurePosixPath]:
        """Every file to a temporary name first, then each moved into place in order (the JSON
        record first, as OutputFolder does)."""
        staged: list[tuple[str, str]] = []
        try:
            for name, text in files.items():
                temp = self._key(temp_name(name))
                with self.fs.open_output_stream(temp) as f:
                    f.write(text.encode("utf-8"))
                staged.append((temp, name))
            for temp, name in staged:
                self.fs.move(temp, self._key(name))
        except Exception as e:
            for temp, _ in staged:
                try:
                    self.fs.delete_file(temp)
                except Exception:
                    pass
            raise OutputError(f"{self._key(next(iter(files)))}: cannot write the output ({e})") from None
        return [self.path(name) for name in files]

    def remove(self, name: str) -> None:
        try:
            self.fs.delete_file(self._key(name))
        except Exception:
            pass
