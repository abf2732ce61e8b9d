"""Tests for resnet_keras/fetch.py: downloads through a mirror on 127.0.0.1, never the internet.

Each test serves tiny files from tests/loopback.py's server, their sha256 in
the hash list that replaces the published hashes (`RESNET_KERAS_HASHES`), and
checks what the cache holds afterwards: the file whole, or nothing.
"""

import hashlib
import os

import pytest
from loopback import Mirror, forget_proxies, refused_url  # tests/ is on sys.path

from resnet_keras import fetch
from resnet_keras import weights as weights_lib
from resnet_keras.backend import keras
from resnet_keras.registry import get_spec

URL = "https://files.example/models/tiny.bin"
DATA = bytes(range(256)) * 400  # 100 KiB: several reads, a progress bar


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    served = Mirror()
    served.add(URL, DATA)
    served.point(monkeypatch, tmp_path / "keras", tmp_path / "SHA256SUMS")
    yield served
    served.close()
    forget_proxies()  # a later test builds urllib's opener with its own settings


def _remote(tmp_path, url=URL, file_hash="0" * 64, **kwargs):
    return fetch.Remote(url=url, file_hash=file_hash,
                        path=str(tmp_path / "keras" / "models" / os.path.basename(url)),
                        **kwargs)


def _cached(tmp_path):
    """The cache folder's files but its lock: what a reader could find."""
    folder = tmp_path / "keras" / "models"
    return sorted(p.name for p in folder.iterdir() if p.name != ".fetch.lock") \
        if folder.exists() else []


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def test_first_use_downloads_once_and_the_next_reads_the_cache(mirror, tmp_path, capsys):
    remote = _remote(tmp_path)
    assert fetch.fetch(remote, what="a file") == remote.path
    with open(remote.path, "rb") as f:
        assert f.read() == DATA
    assert mirror.requests == ["/files.example/models/tiny.bin"]
    assert "Downloading data from " + mirror.url in capsys.readouterr().out  # get_file's progress
    fetch.fetch(remote, what="a file")
    assert len(mirror.requests) == 1
    assert _cached(tmp_path) == ["tiny.bin"]
    assert remote.record() == {"url": URL, "file": remote.path,
                               "hash": "sha256:" + hashlib.sha256(DATA).hexdigest()}


def test_a_wrong_hash_is_refused_and_nothing_is_cached(mirror, tmp_path):
    other = "https://files.example/models/unlisted.bin"
    mirror.add(other, DATA, listed=False)  # checked against the "published" zeros
    with pytest.raises(fetch.DownloadError) as error:
        fetch.fetch(_remote(tmp_path, other), what="a file")
    message = _one_line(error)
    assert (f"does not match the sha256 published, {'0' * 64}: cut short, or the mirror's "
            f"own copy (list its hash in RESNET_KERAS_HASHES); deleted, nothing was cached"
            in message)
    assert f"get {other} and put it at {tmp_path / 'keras' / 'models' / 'unlisted.bin'}" \
        in message
    assert _cached(tmp_path) == []


def test_a_connection_closed_halfway_caches_nothing_and_a_retry_succeeds(mirror, tmp_path):
    remote = _remote(tmp_path)
    mirror.cut.add(fetch.mirror_path(URL))
    with pytest.raises(fetch.DownloadError) as error:
        fetch.fetch(remote, what="a file")
    assert f"({len(DATA) // 2:,} bytes" in _one_line(error)
    # The server sent a Content-Length: the message says how far the transfer got.
    assert (f"the transfer stopped after {len(DATA) // 2:,} of {len(DATA):,} bytes (try "
            f"again); deleted, nothing was cached") in str(error.value)
    assert _cached(tmp_path) == []
    mirror.cut.clear()
    fetch.fetch(remote, what="a file")
    assert _cached(tmp_path) == ["tiny.bin"] and len(mirror.requests) == 2


def test_a_404_and_a_refused_connection_are_one_line_naming_url_and_file(mirror, tmp_path,
                                                                        monkeypatch):
    absent = "https://files.example/models/absent.bin"
    remote = _remote(tmp_path, absent)
    with pytest.raises(fetch.DownloadError) as error:
        fetch.fetch(remote, what="a file")
    assert _one_line(error) == (
        f"a file: could not download {mirror.url}/files.example/models/absent.bin (HTTP 404 "
        f"Not Found); to get it by hand, get {absent} and put it at {remote.path}.")
    nowhere = refused_url()
    monkeypatch.setenv(fetch.MIRROR_ENV, nowhere)
    with pytest.raises(fetch.DownloadError) as error:
        fetch.fetch(remote, what="a file")
    assert _one_line(error).startswith(f"a file: could not download {nowhere}/files.example/")
    assert "Connection refused" in str(error.value) and remote.path in str(error.value)
    assert _cached(tmp_path) == []


def test_offline_makes_no_request_and_names_every_missing_file(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")
    remotes = [_remote(tmp_path), _remote(tmp_path, "https://files.example/models/b.bin")]
    with pytest.raises(FileNotFoundError) as error:
        fetch.fetch_all(remotes, what="two files", alternatives="pass data_dir=<folder>")
    assert _one_line(error) == (
        f"two files: 2 files not in the cache, and downloads are off (RESNET_KERAS_OFFLINE=1 "
        f"or --offline): get {URL}, https://files.example/models/b.bin and put them in "
        f"{tmp_path / 'keras' / 'models'}; or pass data_dir=<folder>.")
    assert mirror.requests == []
    monkeypatch.setenv(fetch.OFFLINE_ENV, "maybe")
    with pytest.raises(ValueError, match="RESNET_KERAS_OFFLINE='maybe' is not valid"):
        fetch.fetch(remotes[0], what="a file")


def test_a_file_mirror_serves_offline(tmp_path, monkeypatch):
    folder = tmp_path / "mirror" / "files.example" / "models"
    folder.mkdir(parents=True)
    (folder / "tiny.bin").write_bytes(DATA)
    monkeypatch.setenv(fetch.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")
    remote = _remote(tmp_path, file_hash=hashlib.md5(DATA).hexdigest())  # md5, as keras's
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    fetch.fetch(remote, what="a file")
    assert _cached(tmp_path) == ["tiny.bin"]


def test_torch_hub_prefix_in_the_name_is_checked(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv(fetch.HASHES_ENV)
    prefix = hashlib.sha256(DATA).hexdigest()[:8]
    good = f"https://files.example/models/net-{prefix}.pth"
    bad = "https://files.example/models/net-00000000.pth"
    for url in (good, bad):
        mirror.add(url, DATA, listed=False)
    fetch.fetch(_remote(tmp_path, good, prefix, hash_is_prefix=True), what="a checkpoint")
    with pytest.raises(fetch.DownloadError, match="does not match the sha256 prefix "
                                                  "published, 00000000: cut short, or the "):
        fetch.fetch(_remote(tmp_path, bad, "00000000", hash_is_prefix=True), what="x")
    assert _cached(tmp_path) == [f"net-{prefix}.pth"]


def test_a_partial_file_of_a_killed_run_is_started_over(mirror, tmp_path):
    remote = _remote(tmp_path)
    os.makedirs(os.path.dirname(remote.path))
    stale = os.path.join(os.path.dirname(remote.path), ".partial-tiny.bin")
    with open(stale, "wb") as f:
        f.write(DATA[:10])  # what a kill -9 mid-download leaves
    fetch.fetch(remote, what="a file")
    assert _cached(tmp_path) == ["tiny.bin"]

    def interrupted(partial):
        with open(partial, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch.make_once(str(tmp_path / "keras" / "models" / "other.h5"), interrupted)
    assert _cached(tmp_path) == ["tiny.bin"]


def test_proxy_settings_are_honoured(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR_ENV, "http://mirror.invalid")
    monkeypatch.setenv("http_proxy", mirror.url)  # the test server answers as the proxy
    forget_proxies()
    fetch.fetch(_remote(tmp_path), what="a file")
    assert mirror.requests == ["http://mirror.invalid/files.example/models/tiny.bin"]


def test_bad_settings_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR_ENV, "mirror.example")
    with pytest.raises(ValueError, match="RESNET_KERAS_MIRROR='mirror.example' is not an "):
        fetch.source_url(URL)
    sums = tmp_path / "SUMS"
    sums.write_text("# comment\n\nnot-a-line\n")
    monkeypatch.setenv(fetch.HASHES_ENV, str(sums))
    with pytest.raises(ValueError, match=f"{sums}:3 is not '<digest>  <file>'"):
        _remote(tmp_path).expected()
    sums.write_text(f"{'1' * 64} *files.example/models/tiny.bin\n{'2' * 32}  {URL}x\n")
    assert _remote(tmp_path).expected() == ("sha256", "1" * 64, False)
    assert _remote(tmp_path, URL + "x").expected() == ("md5", "2" * 32, False)


def test_imagenet_weights_download_into_the_keras_cache(mirror, tmp_path):
    spec = get_spec("resnet50")
    remote = weights_lib.imagenet_weights(spec, variant="v1", include_top=False)
    assert remote.url == ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                          "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert remote.path == str(tmp_path / "keras" / "models" / os.path.basename(remote.url))
    # A file in keras.applications' layout, small: the download is what is tested here.
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,), name="predictions")])
    model.save_weights(str(tmp_path / "tiny.h5"))
    mirror.add(remote.url, (tmp_path / "tiny.h5").read_bytes())
    (tmp_path / "SHA256SUMS").write_text("\n".join(mirror.hash_lines) + "\n")
    path = weights_lib.imagenet_weights_path(spec, variant="v1", include_top=False)
    assert weights_lib.weight_shapes(path) == {"predictions": [(3, 2), (2,)]}


def test_published_hashes_are_keras_applications_own():
    from tf_keras.src.applications import resnet

    assert weights_lib.KERAS_APPLICATIONS_HASHES == {
        name: resnet.WEIGHTS_HASHES[name] for name in weights_lib.KERAS_APPLICATIONS_HASHES}
