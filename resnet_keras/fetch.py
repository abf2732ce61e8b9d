"""Downloads of published files (weights, datasets): mirrored, hash-checked, cached once.

The transfer is `keras.utils.get_file`'s, as for keras.applications and
keras.datasets: urllib (so `http_proxy`, `https_proxy` and `no_proxy` apply), a
progress bar, the md5/sha256 check, the file removed when the transfer raises.
What it lacks is added here, for every file of this project:

- a temporary name (`.partial-<name>`), renamed only once the hash matches, so
  the cache never holds part of a file, even after a kill; get_file writes
  under the final name and leaves a file whose hash failed;
- torch.hub's check of the sha256 prefix in a checkpoint's name;
- one line naming the URL and where to put the file by hand, where get_file
  raises a bare `Exception`; and a read timeout, where urllib waits forever;
- `RESNET_KERAS_OFFLINE=1` (`train.py --offline`): no network at all;
- `RESNET_KERAS_MIRROR`: every URL read from a mirror laid out `<host>/<path>`;
- `RESNET_KERAS_HASHES`: a `sha256sum` list replacing the published hashes of
  the files it names (files a site rebuilt or repackaged; the tests' tiny files).
"""

import contextlib
import dataclasses
import hashlib
import http.client
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

try:
    import fcntl
except ImportError:  # Windows: no flock; downloads still go through a temporary name
    fcntl = None

MIRROR_ENV = "RESNET_KERAS_MIRROR"
OFFLINE_ENV = "RESNET_KERAS_OFFLINE"
HASHES_ENV = "RESNET_KERAS_HASHES"
# Seconds a read may stall before the download is given up; a whole file may take longer.
READ_TIMEOUT = 60
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
_ALGORITHMS = {32: "md5", 64: "sha256"}  # hex digits -> algorithm, as get_file's "auto"

logger = logging.getLogger(__name__)


class DownloadError(OSError):
    """A download failed (network, server, or hash); the message says how to get the file."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """A published file and where its copy is cached.

    Attributes:
        url: str, where the file is published.
        file_hash: str, its published hex digest: md5 (32 digits) or sha256
            (64), as `keras.utils.get_file` takes them; with `hash_is_prefix`,
            the leading digits of its sha256, as torch.hub names checkpoints.
        path: str, where it is cached (the Keras cache, `backend.keras_cache_dir`).
        hash_is_prefix: bool, see `file_hash`.
    """

    url: str
    file_hash: str
    path: str
    hash_is_prefix: bool = False

    def expected(self) -> tuple[str, str, bool]:
        """(algorithm, hex digest, is a prefix) to check, after `RESNET_KERAS_HASHES`.

        Raises:
            ValueError: an unreadable or malformed hash list, or a hash of an
                unknown length.
        """
        override = _overrides().get(mirror_path(self.url))
        if override is not None:
            return _algorithm(override, HASHES_ENV), override, False
        if self.hash_is_prefix:
            return "sha256", self.file_hash, True
        return _algorithm(self.file_hash, self.url), self.file_hash, False

    def record(self) -> dict:
        """What a result file keeps of where this file came from: URL, file, hash."""
        algorithm, digest, prefix = self.expected()
        return {"url": self.url, "file": self.path,
                "hash": f"{algorithm}{' prefix' if prefix else ''}:{digest}"}


def offline() -> bool:
    """Whether downloads are off: `RESNET_KERAS_OFFLINE` set to 1 (true, yes, on).

    Read at each call, so a script (or `train.py --offline`) may set it late.

    Raises:
        ValueError: another value; the message lists the valid ones.
    """
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]!r} is not valid; use 1 "
                         f"(no downloads) or 0.")
    return value in _TRUE


def source_url(url) -> str:
    """Where `url` is read from: itself, or under `RESNET_KERAS_MIRROR` as `<host>/<path>`.

    The layout is what `wget -x URL` (`--force-directories`) writes, so a
    mirror is a folder filled that way on a machine online, served over HTTP
    or read in place as `file:///folder`.

    Raises:
        ValueError: a mirror that is not an http, https or file URL.
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ValueError(f"{MIRROR_ENV}={mirror!r} is not an http://, https:// or file:// "
                         f"URL of a mirror laid out <host>/<path>.")
    return f"{mirror.rstrip('/')}/{mirror_path(url)}"


def fetch(remote, *, what, alternatives="") -> str:
    """The cached copy of `remote`, downloaded and hash-checked if it is not cached.

    A cached file is trusted as it is: it got there either whole and checked
    from here, or by hand.

    Args:
        remote: a `Remote`.
        what: str, the file in words for messages, e.g. "ImageNet weights for resnet50".
        alternatives: str, other ways to the data, ending the messages ("or ...").

    Returns:
        str, `remote.path`.

    Raises:
        FileNotFoundError: not cached and downloads are off; the message
            names the URL and the path to put the file at.
        DownloadError: the download failed or its hash did not match (the
            download is deleted); the message says which and names the URL
            and the path.
    """
    return fetch_all([remote], what=what, alternatives=alternatives)[0]


def fetch_all(remotes, *, what, alternatives="") -> list[str]:
    """`fetch` for several files: offline, one message names every file missing.

    Args:
        remotes: list of `Remote`.
        what: as `fetch`.
        alternatives: as `fetch`.

    Returns:
        list of str, the cached paths in the order of `remotes`.

    Raises:
        FileNotFoundError, DownloadError: as `fetch`.
    """
    missing = [r for r in remotes if not os.path.isfile(r.path)]
    other_ways = f"; or {alternatives}" if alternatives else ""
    if missing and offline() and not all(_is_local(r.url) for r in missing):
        raise FileNotFoundError(
            f"{what}: {_count(missing)} not in the cache, and downloads are off "
            f"({OFFLINE_ENV}=1 or --offline): {_by_hand(missing)}{other_ways}.")
    for position, remote in enumerate(missing):
        try:
            make_once(remote.path, lambda partial, remote=remote: _download(remote, partial))
        except DownloadError as e:
            rest = missing[position:]
            raise DownloadError(f"{what}: {e}; to get {'them' if len(rest) > 1 else 'it'} by "
                                f"hand, {_by_hand(rest)}{other_ways}.") from None
        algorithm, _, prefix = remote.expected()
        logger.info("  cached %s (%s bytes, %s%s checked)", remote.path,
                    f"{os.path.getsize(remote.path):,}", algorithm, " prefix" if prefix else "")
    return [r.path for r in remotes]


def make_once(path, make) -> str:
    """Makes `path` whole or not at all, once, whoever else tries at the same time.

    Under an exclusive lock on the folder's `.fetch.lock`: when `path` is
    still missing, `make(partial)` writes `.partial-<name>` (same suffix, for
    writers that read it), which then replaces `path`. A partial file left
    by a killed process is removed first, so the next run starts over.

    Args:
        path: str, the file to make.
        make: callable taking the temporary path to write.

    Returns:
        str, `path`.

    Raises:
        Whatever `make` raises; the partial file is removed and `path` stays missing.
    """
    folder, name = os.path.split(os.fspath(path))
    os.makedirs(folder or ".", exist_ok=True)
    partial = os.path.join(folder, ".partial-" + name)
    # One lock a folder, never removed (removing a lock file races with its
    # next user): it leaves one empty file, not one per download.
    with _locked(os.path.join(folder or ".", ".fetch.lock"), name):
        if os.path.isfile(path):  # another process made it while we waited
            return path
        try:
            if os.path.lexists(partial):
                os.remove(partial)
            make(partial)
            os.replace(partial, path)
        finally:
            if os.path.lexists(partial):
                os.remove(partial)
    return path


def file_digest(path, algorithm="sha256") -> str:
    """The hex digest of a file, read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_path, name):
    if fcntl is None:
        yield
        return
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process writing into the folder of %s", name)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # the kernel drops the lock when the file closes or the process dies


def _download(remote, partial):
    """`remote` into `partial` through get_file, then its hash checked."""
    from resnet_keras.backend import keras

    algorithm, digest, prefix = remote.expected()
    url = source_url(remote.url)
    if offline() and not _is_local(url):
        raise DownloadError(f"downloads are off ({OFFLINE_ENV}=1)")
    previous_timeout = socket.getdefaulttimeout()
    # urllib waits forever on a stalled server; this bounds each read, not the file.
    socket.setdefaulttimeout(READ_TIMEOUT)
    try:
        # An absolute fname is where get_file writes; its own hash check runs
        # where it can (a whole digest), torch.hub's prefix check below.
        # cache_subdir too: get_file creates `cache_dir/cache_subdir` whatever fname is.
        folder = os.path.dirname(os.path.abspath(partial))
        keras.utils.get_file(fname=os.path.abspath(partial), origin=url,
                             file_hash=None if prefix else digest, hash_algorithm=algorithm,
                             cache_dir=folder, cache_subdir=folder)
    except ValueError:
        # get_file's hash mismatch; it leaves the file, which make_once removes.
        raise DownloadError(_mismatch(remote, url, partial)) from None
    except Exception as e:  # get_file re-raises urllib's errors as a bare Exception
        cause = _network_cause(e)
        if cause is None:
            raise
        raise DownloadError(f"could not download {url} ({cause})") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    if prefix and not file_digest(partial).startswith(digest):
        raise DownloadError(_mismatch(remote, url, partial))


def _mismatch(remote, url, partial):
    algorithm, digest, prefix = remote.expected()
    found, size = "unknown", None
    if os.path.isfile(partial):
        found, size = file_digest(partial, algorithm), os.path.getsize(partial)
    listed = mirror_path(remote.url) in _overrides()
    expected = (f"the {algorithm}{' prefix' if prefix else ''} "
                f"{'listed in ' + HASHES_ENV if listed else 'published'}, {digest}")
    # get_file never compares the bytes received with Content-Length: a cut
    # connection shows up here, as a short file whose hash does not match.
    served = _served_size(url) if size is not None else None
    mirrored = url != remote.url and not listed
    if served is not None and size < served:
        why = f"the transfer stopped after {size:,} of {served:,} bytes (try again)"
    elif mirrored:
        why = f"cut short, or the mirror's own copy (list its hash in {HASHES_ENV})"
    else:
        why = "cut short or altered (try again)"
    shown = "?" if size is None else f"{size:,}"
    return (f"the download from {url} ({shown} bytes, {algorithm} {found}) does not match "
            f"{expected}: {why}; deleted, nothing was cached")


def _served_size(url):
    """The Content-Length the server gives for `url` (a HEAD request), or None without one."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                    timeout=READ_TIMEOUT) as response:
            length = response.headers.get("Content-Length")
    except (OSError, ValueError):  # urllib's URLError and HTTPError are OSErrors
        return None
    return int(length) if length and length.isdigit() else None


def _network_cause(error):
    """urllib's or the socket's error behind `error`, in words; None if there is none."""
    seen = error
    while seen is not None:
        if isinstance(seen, urllib.error.HTTPError):
            return f"HTTP {seen.code} {seen.reason}"
        if isinstance(seen, urllib.error.ContentTooShortError):
            return f"the connection closed early: {seen.reason}"
        if isinstance(seen, urllib.error.URLError):
            return str(seen.reason)
        if isinstance(seen, TimeoutError):
            return f"no data for {READ_TIMEOUT} s"
        if isinstance(seen, OSError | http.client.HTTPException):
            return f"{type(seen).__name__}: {seen}" if str(seen) else type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _by_hand(remotes):
    """`get URL and put it at PATH`, or for several in one folder `get A, B and put them in F`."""
    folders = {os.path.dirname(r.path) for r in remotes}
    if len(remotes) == 1:
        return f"get {remotes[0].url} and put it at {remotes[0].path}"
    if len(folders) == 1:
        return f"get {', '.join(r.url for r in remotes)} and put them in {folders.pop()}"
    return "; ".join(f"get {r.url} and put it at {r.path}" for r in remotes)


def _count(remotes):
    return "1 file" if len(remotes) == 1 else f"{len(remotes)} files"


def _is_local(url):
    return urllib.parse.urlsplit(source_url(url)).scheme == "file"


def mirror_path(url) -> str:
    """`<host>/<path>` of a URL: its place in a mirror and its name in the hash list."""
    parts = urllib.parse.urlsplit(url.strip())
    if not parts.scheme:
        return url.strip().lstrip("./").lstrip("/")
    return (parts.netloc + parts.path).lstrip("/")


def _algorithm(digest, source):
    algorithm = _ALGORITHMS.get(len(digest))
    if algorithm is None or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{source}: {digest!r} is neither an md5 (32 hex digits) nor a "
                         f"sha256 (64) digest.")
    return algorithm


def _overrides():
    """{`<host>/<path>`: hex digest} of the `RESNET_KERAS_HASHES` file, {} when unset.

    The file is `sha256sum`'s (or `md5sum`'s) output, `<digest>  <name>` a
    line, the name being the file's place in a mirror or its URL.
    """
    path = os.environ.get(HASHES_ENV, "").strip()
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"{HASHES_ENV}={path}: cannot read it ({e.strerror or e}).") from None
    found = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{number} is not '<digest>  <file>' as sha256sum writes "
                             f"it: {line!r}.")
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        _algorithm(digest, f"{path}:{number}")
        found[mirror_path(name)] = digest
    return found
