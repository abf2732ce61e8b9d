"""Tests for datasets/: splits, pipelines, augmentation and error messages.

CIFAR is tested on tiny archives in the real format written here; nothing is
downloaded.
"""

import io
import logging
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from datasets import DATASETS, cifar, folder, load_dataset

CIFAR_PER_BATCH = 20


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def first_batch(dataset):
    images, labels = next(iter(dataset))
    return images.numpy(), labels.numpy()


def all_batches(dataset):
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def shifted(image, max_shift):
    """Every zero-padded translation of `image` by at most `max_shift` pixels."""
    h, w = image.shape[:2]
    m = max_shift
    padded = np.pad(image, ((m, m), (m, m), (0, 0)))
    return [padded[m + dy:m + dy + h, m + dx:m + dx + w]
            for dy in range(-m, m + 1) for dx in range(-m, m + 1)]


def matches_any(image, candidates):
    return any(np.array_equal(image, c) for c in candidates)


# --- digits ---

def test_digits_split_counts_and_stratification(digits):
    assert (digits.num_train, digits.num_test, digits.num_val) == (1437, 360, 0)
    assert digits.class_names == tuple("0123456789") and digits.num_classes == 10
    assert digits.image_shape == (32, 32, 3)
    images, labels = digits.test_arrays()
    assert images.shape == (360, 32, 32, 3) and images.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (~180 images)
    assert images.max() == 255 and images.min() == 0
    # Gray replicated to three channels.
    assert np.array_equal(images[..., 0], images[..., 2])


def test_digits_pipelines_element_spec_and_range(digits):
    train = digits.train(64, seed=1)
    image_spec, label_spec = train.element_spec
    assert image_spec.shape.as_list() == [None, 32, 32, 3] and image_spec.dtype.name == "float32"
    assert label_spec.dtype.name == "int32"
    images, labels = first_batch(train)
    assert images.shape == (64, 32, 32, 3)
    assert 0.0 <= images.min() and images.max() <= 255.0
    assert set(labels) <= set(range(10))
    # test() is the test split in a fixed order, exactly test_arrays().
    test_images, test_labels = all_batches(digits.test(100))
    arrays = digits.test_arrays()
    np.testing.assert_array_equal(test_images, arrays[0].astype(np.float32))
    np.testing.assert_array_equal(test_labels, arrays[1])


def test_digits_augmentation_shifts_and_never_flips(digits):
    originals, _ = first_batch(digits.train(128, shuffle=False, augment=False))
    augmented, _ = first_batch(digits.train(128, shuffle=False, augment=True, seed=3))
    moved = 0
    for original, image in zip(originals, augmented):
        assert matches_any(image, shifted(original, 2)), "not a shift of at most 2 pixels"
        moved += not np.array_equal(image, original)
    assert moved > 64


def test_training_stream_is_seeded_shuffled_and_repeats(digits):
    a = first_batch(digits.train(32, seed=5))
    b = first_batch(digits.train(32, seed=5))
    c = first_batch(digits.train(32, seed=6))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    # repeat=True goes on past one epoch; drop_remainder fixes the batch size.
    batches = list(digits.train(500, repeat=True, drop_remainder=True).take(4))
    assert all(images.shape[0] == 500 for images, _ in batches)
    assert len(list(digits.train(500, drop_remainder=True))) == 2
    # Each pass of a non-repeated pipeline is reshuffled and re-augmented.
    epochs = digits.train(1437, seed=2)
    first, second = (next(iter(epochs)) for _ in range(2))
    assert not np.array_equal(first[1].numpy(), second[1].numpy())


def test_calibration_images(digits):
    images = digits.calibration_images(50, seed=1)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    np.testing.assert_array_equal(images, digits.calibration_images(50, seed=1))
    assert len({image.tobytes() for image in images}) == 50
    with pytest.raises(ValueError, match="n=2000 .* 1437"):
        digits.calibration_images(2000)


def test_val_split_holds_out_training_images():
    ds = load_dataset("digits", val_split=0.1, seed=1)
    assert (ds.num_train, ds.num_val, ds.num_test) == (1293, 144, 360)
    _, val_labels = all_batches(ds.val(64))
    assert len(val_labels) == 144 and set(val_labels) == set(range(10))
    assert load_dataset("digits", val_split=100).num_val == 100
    assert load_dataset("digits", val_split=np.int64(100)).num_val == 100


@pytest.mark.parametrize("val_split", [-1, 1437, True, "10%", -0.5, float("nan")])
def test_invalid_val_split(val_split):
    with pytest.raises(ValueError, match="val_split=.*fraction in \\(0, 1\\) or a count"):
        load_dataset("digits", val_split=val_split)


@pytest.mark.parametrize("val_split, hint", [(100.0, r" \(val_split=100\)"), (1.5, ""),
                                             (1.0, r" \(val_split=1\)"), (float("inf"), "")])
def test_float_val_split_is_a_fraction_never_a_count(val_split, hint):
    """A count must be an int: 100.0 is rejected, not read as 100 images."""
    with pytest.raises(ValueError, match=rf"val_split={val_split!r} is a float, so it is read "
                                         rf"as a fraction .* must be in \(0, 1\); .* pass it "
                                         rf"as an int{hint}\.$"):
        load_dataset("digits", val_split=val_split)


def test_user_errors_have_clear_messages(digits):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'; valid: " + ", ".join(DATASETS)):
        load_dataset("mnist")
    with pytest.raises(ValueError, match=r"batch_size=2000 is larger than the digits training "
                                         r"split \(1437 images\); use batch_size <= 1437"):
        digits.train(2000)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        digits.train(0)
    with pytest.raises(ValueError, match="no validation split.*val_split="):
        digits.val(32)
    with pytest.raises(ValueError, match="takes no data_dir"):
        load_dataset("digits", data_dir="/tmp")
    with pytest.raises(ValueError, match="image_size=64 applies to the 'folder' dataset only"):
        load_dataset("digits", image_size=64)


# --- CIFAR, from tiny archives in the real format ---

def _pickle(obj):
    return pickle.dumps(obj, protocol=2)  # as the official Python 2 files


def write_cifar(root, name, *, layout):
    """Writes a tiny CIFAR dataset; returns (path to pass, expected arrays, class names)."""
    fmt = cifar.FORMATS[name]
    num_classes = 10 if name == "cifar10" else 100
    class_names = [f"class_{i}" for i in range(num_classes)]
    rng = np.random.default_rng(len(name))
    files, expected = {}, {"train": ([], []), "test": ([], [])}
    for split, batch_names in (("train", fmt.train), ("test", fmt.test)):
        for batch_name in batch_names:
            images = rng.integers(0, 256, (CIFAR_PER_BATCH, 32, 32, 3), dtype=np.uint8)
            labels = [int(v) for v in rng.permutation(CIFAR_PER_BATCH) % num_classes]
            files[batch_name] = _pickle({
                b"batch_label": batch_name.encode(),
                fmt.label_key: labels,
                b"data": images.transpose(0, 3, 1, 2).reshape(CIFAR_PER_BATCH, 3072),
                b"filenames": [f"{i}.png".encode() for i in range(CIFAR_PER_BATCH)]})
            expected[split][0].append(images)
            expected[split][1].append(labels)
    files[fmt.meta] = _pickle({fmt.names_key: [n.encode() for n in class_names]})
    expected = {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in expected.items()}

    if layout in ("extracted_parent", "extracted_folder", "keras_home_extracted"):
        folder = root / "datasets" / fmt.folder if layout.startswith("keras") else root / fmt.folder
        folder.mkdir(parents=True)
        for file_name, content in files.items():
            (folder / file_name).write_bytes(content)
        path = {"extracted_parent": root, "extracted_folder": folder}.get(layout)
        return path, expected, class_names
    archive_dir = root / "datasets" if layout == "keras_home_archive" else root
    archive_dir.mkdir(parents=True, exist_ok=True)
    archive = archive_dir / fmt.archive
    with tarfile.open(archive, "w:gz") as tar:
        for file_name, content in files.items():
            info = tarfile.TarInfo(f"{fmt.folder}/{file_name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path = {"archive_file": archive, "archive_folder": root}.get(layout)
    return path, expected, class_names


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["archive_file", "archive_folder", "extracted_parent",
                                    "extracted_folder", "keras_home_archive",
                                    "keras_home_extracted"])
def test_cifar_round_trips_from_every_location(tmp_path, monkeypatch, name, layout):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    path, expected, class_names = write_cifar(tmp_path, name, layout=layout)
    ds = load_dataset(name, data_dir=path)
    num_train_batches = 5 if name == "cifar10" else 1
    assert ds.class_names == tuple(class_names)
    assert (ds.num_train, ds.num_test) == (CIFAR_PER_BATCH * num_train_batches, CIFAR_PER_BATCH)
    test_images, test_labels = ds.test_arrays()
    np.testing.assert_array_equal(test_images, expected["test"][0])
    np.testing.assert_array_equal(test_labels, expected["test"][1])
    train_images, train_labels = all_batches(ds.train(7, shuffle=False, augment=False))
    np.testing.assert_array_equal(train_images, expected["train"][0].astype(np.float32))
    np.testing.assert_array_equal(train_labels, expected["train"][1])


def test_cifar_augmentation_pads_crops_and_flips_sometimes(tmp_path):
    path, expected, _ = write_cifar(tmp_path, "cifar10", layout="archive_file")
    ds = load_dataset("cifar10", data_dir=path)
    augmented, _ = all_batches(ds.train(50, shuffle=False, augment=True, seed=0))
    assert augmented.shape == (100, 32, 32, 3) and augmented.dtype == np.float32
    flips = 0
    for original, image in zip(expected["train"][0], augmented.astype(np.uint8)):
        straight = matches_any(image, shifted(original, 4))
        flipped = matches_any(image, shifted(original[:, ::-1], 4))
        assert straight or flipped, "not a pad-4 crop of the image or of its mirror"
        flips += flipped
    assert 25 < flips < 75
    again, _ = all_batches(ds.train(50, shuffle=False, augment=True, seed=0))
    np.testing.assert_array_equal(augmented, again)


def test_cifar_val_split(tmp_path):
    path, _, _ = write_cifar(tmp_path, "cifar10", layout="archive_file")
    ds = load_dataset("cifar10", data_dir=path, val_split=10)
    assert (ds.num_train, ds.num_val, ds.num_test) == (90, 10, 20)
    assert set(all_batches(ds.val(4))[1]) == set(range(10))


def test_cifar_missing_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar100")
    message = str(info.value)
    for part in ("cifar-100-python.tar.gz", str(tmp_path / "keras" / "datasets"),
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "data_dir=",
                 "KERAS_HOME"):
        assert part in message
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path / 'empty'}.*cifar-10-python"):
        (tmp_path / "empty").mkdir()
        load_dataset("cifar10", data_dir=tmp_path / "empty")


def test_cifar_broken_archives(tmp_path):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="not a readable CIFAR-10 archive"):
        load_dataset("cifar10", data_dir=bad)
    incomplete = tmp_path / "incomplete.tar.gz"
    with tarfile.open(incomplete, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        content = _pickle({b"label_names": [b"a"]})
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    with pytest.raises(ValueError, match="not a complete CIFAR-10 archive: data_batch_1"):
        load_dataset("cifar10", data_dir=incomplete)


def test_cifar_pickles_cannot_run_code(tmp_path):
    _, _, _ = write_cifar(tmp_path, "cifar100", layout="extracted_parent")

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match="test is not a CIFAR-100 batch file.*system"):
        load_dataset("cifar100", data_dir=tmp_path)


# --- folder ---

def save(path, array, image_format, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, image_format, **options)


def write_folder(root):
    """A tiny train/val tree of assorted formats and sizes, with files to skip."""
    rng = np.random.default_rng(0)

    def rgb(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    save(root / "train/cat/a.jpg", rgb(40, 30), "JPEG")
    save(root / "train/cat/b.png", rgb(17, 50), "PNG")
    save(root / "train/cat/c.jpeg", np.full((20, 20), 90, np.uint8), "JPEG")  # grayscale
    save(root / "train/dog/d.png", rng.integers(0, 256, (33, 31, 4), dtype=np.uint8), "PNG")
    save(root / "train/dog/nested/e.gif", rgb(25, 25), "GIF")
    save(root / "train/dog/f.bmp", rgb(64, 48), "BMP")
    (root / "train/cat/corrupt.jpg").write_bytes(rng.bytes(2000))
    (root / "train/dog/notes.txt").write_text("not an image")
    (root / "train/dog/.DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: ignored
    buffer = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buffer, "JPEG")
    (root / "train/dog/truncated.jpg").write_bytes(buffer.getvalue()[:-600])
    save(root / "train/cat/g.tiff", rgb(10, 10), "TIFF")  # PIL reads it, TensorFlow does not
    save(root / "val/cat/h.png", np.full((30, 60, 3), (200, 100, 50), np.uint8), "PNG")
    save(root / "val/dog/i.png", np.full((45, 20), 77, np.uint8), "PNG")  # grayscale
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[...] = (10, 20, 30, 128)
    save(root / "val/dog/j.png", rgba, "PNG")


def test_folder_loads_assorted_images_and_skips_bad_files(tmp_path, caplog):
    write_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="datasets.folder"):
        ds = load_dataset("folder", data_dir=tmp_path, image_size=32)
    assert ds.class_names == ("cat", "dog") and ds.image_shape == (32, 32, 3)
    assert (ds.num_train, ds.num_test) == (6, 3)
    skipped = sorted(os.path.basename(p) for p in ds.skipped_files)
    assert skipped == ["corrupt.jpg", "g.tiff", "notes.txt", "truncated.jpg"]
    message = caplog.text
    assert "skipped 4 of 13 files" in message and "corrupt.jpg" in message
    assert "truncated JPEG" in message and "TIFF is not decodable" in message

    images, labels = all_batches(ds.train(4, seed=0))
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    plain, _ = all_batches(ds.train(6, augment=False, shuffle=False))
    assert plain.shape == (6, 32, 32, 3)

    test_images, test_labels = ds.test_arrays()
    assert test_images.dtype == np.uint8 and list(test_labels) == [0, 1, 1]
    np.testing.assert_array_equal(all_batches(ds.test(2))[0], test_images.astype(np.float32))
    # Solid colours survive resizing; grayscale is replicated, alpha dropped.
    assert (test_images[0] == (200, 100, 50)).all()
    assert (test_images[1] == 77).all()
    assert (test_images[2] == (10, 20, 30)).all()
    assert ds.calibration_images(6).shape == (6, 32, 32, 3)


def test_folder_default_size_is_224(tmp_path):
    save(tmp_path / "train/a/x.png", np.zeros((300, 400, 3), np.uint8), "PNG")
    save(tmp_path / "val/a/y.png", np.zeros((10, 12, 3), np.uint8), "PNG")
    ds = load_dataset("folder", data_dir=tmp_path)
    assert ds.image_shape == (224, 224, 3)
    assert first_batch(ds.train(1))[0].shape == (1, 224, 224, 3)
    assert ds.test_arrays()[0].shape == (1, 224, 224, 3)


def test_folder_errors_explain_the_layout(tmp_path):
    with pytest.raises(ValueError, match="needs data_dir.*train/<class name>"):
        load_dataset("folder")
    with pytest.raises(FileNotFoundError, match="does not exist.*data_dir/train/<class name>"):
        load_dataset("folder", data_dir=tmp_path / "nowhere")
    save(tmp_path / "train/cat/a.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'val'} does not exist"):
        load_dataset("folder", data_dir=tmp_path)
    save(tmp_path / "val/cat/b.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    (tmp_path / "train/dog").mkdir()
    with pytest.raises(ValueError, match=f"Class folder {tmp_path / 'train/dog'} has no images"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "train/dog/bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="1 files, none a decodable image"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "train/dog/bad.jpg").unlink()
    (tmp_path / "train/dog").rmdir()
    save(tmp_path / "val/bird/c.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    with pytest.raises(ValueError, match="class folders that .* lacks: bird"):
        load_dataset("folder", data_dir=tmp_path)


def test_folder_training_survives_files_that_fail_to_decode(tmp_path, monkeypatch):
    write_folder(tmp_path)
    # As if the up-front check had let every file through.
    monkeypatch.setattr(folder, "_check_image_file", lambda path: None)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=16)
    assert ds.num_train == 10 and not ds.skipped_files
    images, _ = all_batches(ds.train(3, seed=0))
    assert images.shape == (6, 16, 16, 3)

