"""Outputs that appear only when complete, and the checks that keep them from replacing inputs.

Every output (a TIFF file, a zarr folder) is written under a temporary name
in its final folder, ``.NAME.partial-HOST-PID-RANDOM``, and renamed to NAME
once complete. A process killed midway leaves its partial behind; the next
run writing NAME on the same host removes the partials of NAME whose
process is gone (a partial of a live process, or of another host sharing
the folder, is left alone).
"""

import errno
import os
import shutil
import socket
import tempfile

__all__ = ["umask", "partial_prefix", "make_partial", "remove_stale_partials", "publish", "flush_tree", "check_not_an_input",
           "check_output_path"]


def umask():
    """The process umask (read without changing it for more than an instant)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def partial_prefix(path):
    """Name prefix of every partial of `path`: ``.NAME.partial-``."""
    return f".{os.path.basename(os.fspath(path))}.partial-"


def _host():
    return socket.gethostname().replace("-", "_") or "host"


def make_partial(path, *, directory=False):
    """Create a partial for `path` in its folder, permissions as the umask gives; return its path.

    The folder must exist. Stale partials of `path` are removed first.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    remove_stale_partials(path)
    prefix = f"{partial_prefix(path)}{_host()}-{os.getpid()}-"
    if directory:
        temp = tempfile.mkdtemp(prefix=prefix, dir=folder)
        os.chmod(temp, 0o777 & ~umask())
        return temp
    handle, temp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        os.fchmod(handle, 0o666 & ~umask())  # mkstemp makes it private; the result should not be
    finally:
        os.close(handle)
    return temp


def _owner(name, prefix):
    """(host, pid) a partial's name records, or None for a name this module did not make."""
    host, _, rest = name[len(prefix):].partition("-")
    pid, _, _ = rest.partition("-")
    return (host, int(pid)) if host and pid.isdigit() else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(path):
    """Remove the partials of `path` left by processes of this host that are gone; return their names."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    prefix, host = partial_prefix(path), _host()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        owner = _owner(name, prefix)
        if owner is None or owner[0] != host or owner[1] == os.getpid() or _alive(owner[1]):
            continue
        full = os.path.join(folder, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.remove(full)
            except FileNotFoundError:
                pass
        removed.append(name)
    return removed


def publish(partial, path):
    """Give the complete `partial` (a file, or a folder such as a zarr store) its final name `path`.

    Its files and folders are flushed to the disk first (``fsync``; an error
    there is an error of the write and is raised), then it is renamed, and
    the rename itself is flushed. An existing `path` is replaced: a file at
    once, a folder only once the new one is in place (it is moved aside
    under a partial name, then removed).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> partial = make_partial(os.path.join(folder, "out.txt"))
    >>> with open(partial, "w") as handle:
    ...     _ = handle.write("done")
    >>> publish(partial, os.path.join(folder, "out.txt"))
    >>> sorted(os.listdir(folder))
    ['out.txt']
    """
    partial, path = os.fspath(partial), os.fspath(path)
    flush_tree(partial)
    if os.path.isdir(partial) and os.path.lexists(path):
        old = make_partial(path, directory=True)
        os.replace(path, os.path.join(old, "output"))
        os.replace(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, path)
    _flush(os.path.dirname(os.path.abspath(path)), folder=True)


def flush_tree(path):
    """fsync a file, or every file and folder under a folder (deepest first), raising on a failed flush.

    Examples
    --------
    >>> import tempfile
    >>> flush_tree(tempfile.mkdtemp())
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        _flush(path)
        return
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            _flush(os.path.join(root, name))
        _flush(root, folder=True)


def _flush(path, *, folder=False):
    """fsync `path`. A folder that cannot be opened or synced (some network and FUSE file systems refuse)
    is skipped: its files were synced, and only the rename's durability is at stake there."""
    try:
        handle = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(handle)
    except OSError as error:
        if not (folder and error.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES)):
            raise
    finally:
        os.close(handle)


def _is_zarr_array(path):
    import json

    try:
        with open(os.path.join(path, "zarr.json")) as handle:
            return json.load(handle).get("node_type") == "array"
    except (OSError, ValueError, AttributeError):
        return False


def check_not_an_input(output, inputs, *, name="output"):
    """Refuse an `output` path that is one of `inputs` (also through links or other names for the same
    file) or lies inside one of them; None entries of `inputs` are skipped."""
    output = os.fspath(output)
    real = os.path.realpath(output)
    for source in inputs:
        if source is None:
            continue
        source = os.fspath(source)
        source_real = os.path.realpath(source)
        same = real == source_real
        if not same and os.path.exists(output) and os.path.exists(source):
            same = os.path.samefile(output, source)
        if same:
            raise ValueError(f"{name}={output!r} is the input {source!r}; writing it would destroy the input")
        if os.path.isdir(source_real) and real.startswith(source_real.rstrip(os.sep) + os.sep):
            raise ValueError(f"{name}={output!r} lies inside the input {source!r}; choose a path outside it")


def check_output_path(output, *, inputs=(), name="output", folder_ok=False):
    """Refuse an output path that would destroy an input or is not writable; return it as a str.

    Parameters
    ----------
    output : str or os.PathLike
    inputs : iterable of paths
        Files or folders the run reads: the output may be none of them (also
        through links or other names for the same file) and lie inside none.
    name : str
        The parameter name used in errors.
    folder_ok : bool
        The output is a folder (a zarr array): an existing zarr array may be
        replaced. Otherwise, or for any other existing folder, an existing
        folder is refused.

    Raises
    ------
    ValueError
        Naming `name`, the path and the problem.
    """
    output = os.fspath(output)
    check_not_an_input(output, inputs, name=name)
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise ValueError(f"{name}={output!r}: folder {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}={output!r}: folder {parent!r} is not writable")
    if os.path.isdir(output) and not (folder_ok and _is_zarr_array(output)):
        raise ValueError(f"{name}={output!r} is an existing folder; expected a new file name"
                         + (" or an existing zarr array" if folder_ok else ""))
    return output
