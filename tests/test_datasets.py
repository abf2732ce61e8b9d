"""Tests for datasets/: splits, pipelines, augmentation and error messages.

CIFAR, MNIST and Fashion-MNIST are tested on tiny files in the real formats
written here, read from folders or downloaded from tests/loopback.py's mirror
on 127.0.0.1; TensorFlow Datasets on a tiny dataset prepared here.
"""

import dataclasses
import io
import logging
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from datasets import (
    AUGMENTATIONS,
    DATASETS,
    augmentation,
    cifar,
    folder,
    idx,
    input_pipeline,
    load_dataset,
    writers,
)

CIFAR_PER_BATCH = 20


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
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'; valid: "
                                         + ", ".join(DATASETS)):
        load_dataset("imagenet")
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


# --- every pipeline: a pass ends when its last batch does (issue 37) ---

def tiny_dataset(n=64, side=8):
    """An in-memory `Dataset` of `n` random images, its train and test splits alike."""
    images = np.random.default_rng(0).integers(0, 256, (n, side, side, 3), np.uint8)

    def split():
        return input_pipeline.Split(np.arange(n) % 2, images=images)

    return input_pipeline.Dataset(
        name="tiny", class_names=("a", "b"), image_shape=(side, side, 3), augmentation="shift",
        train=split(), test=split(),
        augment_fn=lambda image, seed: augmentation.pad_crop(image, seed, pad=1),
        eval_fn=lambda image: image), images


def every_pipeline(dataset, images, batch_size):
    return {"train": dataset.train(batch_size, seed=0), "test": dataset.test(batch_size),
            "array_batches": input_pipeline.array_batches(images, batch_size=batch_size)}


def test_every_pipeline_runs_without_the_autotuning_thread():
    dataset, images = tiny_dataset()
    for name, batches in every_pipeline(dataset, images, 4).items():
        assert batches.options().autotune.enabled is False, name
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        input_pipeline.array_batches(images, batch_size=0)


def test_a_pass_ends_when_its_last_batch_does():
    """Tearing down an iterator once waited for tf.data's autotuning thread to wake.

    That thread sleeps 10 ms, 20 ms, ... 2.56 s (from 2.55 s to 5.11 s of its
    life), and the teardown's wake-up can be lost (`input_pipeline.without_autotune`),
    so a teardown could wait seconds, in some passes only: 16 iterators of
    each pipeline, stepped together for 3 s, then torn down together. With
    the thread back (autotuning on), this test failed in 4 runs out of 4.
    """
    import threading
    import time

    dataset, images = tiny_dataset()
    iterators = [iter(batches) for _ in range(16)
                 for batches in every_pipeline(dataset, images, 4).values()]
    steps = 0
    while True:
        try:
            for iterator in iterators:
                next(iterator)
        except StopIteration:
            break
        steps += 1
        time.sleep(0.2)
    del iterator
    assert steps == 16
    # In a thread, so that a teardown that hangs fails the test instead of stalling it.
    teardown = threading.Thread(target=iterators.clear, daemon=True)
    start = time.perf_counter()
    teardown.start()
    teardown.join(timeout=1.0)
    assert not teardown.is_alive(), (
        f"tearing down the iterators took more than 1 s (still going after "
        f"{time.perf_counter() - start:.1f} s): tf.data's autotuning thread is back")


# --- CIFAR, from tiny archives in the real format ---

def write_cifar(root, name, *, layout):
    """Writes a tiny CIFAR dataset; returns (path to pass, expected arrays, class names)."""
    fmt = cifar.FORMATS[name]
    num_classes = 10 if name == "cifar10" else 100
    class_names = [f"class_{i}" for i in range(num_classes)]
    rng = np.random.default_rng(len(name))
    expected = {}
    for split, batch_names in (("train", fmt.train), ("test", fmt.test)):
        n = CIFAR_PER_BATCH * len(batch_names)
        expected[split] = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                           rng.permutation(n) % num_classes)
    files = writers.cifar_files(name, **expected, class_names=class_names)

    if layout in ("extracted_parent", "extracted_folder", "keras_home_extracted"):
        folder = root / "datasets" / fmt.folder if layout.startswith("keras") else root / fmt.folder
        writers.write_files(folder, files)
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
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # offline: tests/conftest.py
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar100")
    cache = tmp_path / "keras" / "datasets"
    assert str(info.value) == (
        f"CIFAR-100 (not in {cache}): 1 file not in the cache, and downloads are off "
        f"(RESNET_KERAS_OFFLINE=1 or --offline): get "
        f"https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and put it at "
        f"{cache / 'cifar-100-python.tar.gz'}; or pass data_dir=<the archive or its folder>.")
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path / 'empty'}.*Nothing is "
                                                f"downloaded into a data_dir.*cifar-10-python"):
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
        content = pickle.dumps({b"label_names": [b"a"]}, protocol=2)
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
    save(tmp_path / "train/b/x.png", np.zeros((20, 20, 3), np.uint8), "PNG")
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
    save(tmp_path / "train/dog/d.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    save(tmp_path / "val/bird/c.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    with pytest.raises(ValueError, match="class folders that .* lacks: bird"):
        load_dataset("folder", data_dir=tmp_path)


def test_folder_needs_two_classes(tmp_path):
    """A tree one level too shallow is one class, which any model gets 100% right."""
    images = np.zeros((3, 8, 8), np.uint8)
    for split in ("train", "val"):
        writers.write_image_folder(tmp_path, split, images, [0, 0, 0], class_names=["images"])
    with pytest.raises(ValueError) as info:
        load_dataset("folder", data_dir=tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'train'} has 1 class folder (images); a classifier needs at least 2, "
        f"each holding the images of one class: {folder.LAYOUT}.")
    shutil.move(tmp_path / "train/images/0.png", tmp_path / "train")
    shutil.rmtree(tmp_path / "train/images")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'train'} has no class folders; a "
                                         f"classifier needs at least 2"):
        load_dataset("folder", data_dir=tmp_path)


def write_linked_folder(root, outside):
    """train/3 and train/5 of 4 images each, val/3 and val/5 of 1; outside/ of 2."""
    rng = np.random.default_rng(4)
    for split, n in (("train", 8), ("val", 2)):
        writers.write_image_folder(root, split, rng.integers(0, 256, (n, 8, 8), np.uint8),
                                   np.arange(n) % 2, class_names=["3", "5"])
    writers.write_image_folder(outside, "extra", rng.integers(0, 256, (2, 8, 8), np.uint8),
                               [0, 0], class_names=["more"])


def test_folder_links_count_each_file_once_and_never_loop(tmp_path, caplog):
    root, outside = tmp_path / "data", tmp_path / "outside"
    write_linked_folder(root, outside)
    os.symlink(".", root / "train/3/again")  # the loop of the issue
    os.symlink("0.png", root / "train/3/link.png")  # a second name for one file
    os.link(root / "train/3/2.png", root / "train/3/hard.png")
    os.symlink(outside / "extra/more", root / "train/5/more")  # followed: 2 more images
    with caplog.at_level(logging.WARNING, logger="datasets.folder"):
        ds = load_dataset("folder", data_dir=root, image_size=8)
    assert (ds.num_train, ds.num_test) == (10, 2)
    assert np.bincount(all_batches(ds.train(5, shuffle=False))[1]).tolist() == [4, 6]
    assert not ds.skipped_files
    message = caplog.text
    assert "3 paths lead to files or folders already read, each read once: " in message
    for part in ("train/3/again (a folder link that loops, not followed)",
                 "train/3/link.png (the same file as train/3/0.png)",
                 "train/3/hard.png (the same file as train/3/2.png)"):
        assert part in message
    assert "also training images" not in message


def test_folder_link_above_the_class_folder_is_not_followed(tmp_path, caplog):
    """train/3/up -> .. reaches train/5 and train/3/up again: a tree without end."""
    write_linked_folder(tmp_path, tmp_path / "outside")
    os.symlink("..", tmp_path / "train/3/up")
    with caplog.at_level(logging.WARNING, logger="datasets.folder"):
        ds = load_dataset("folder", data_dir=tmp_path, image_size=8)
    assert ds.num_train == 8
    assert "train/3/up (a folder link that loops, not followed)" in caplog.text


def test_folder_one_file_in_two_classes_or_in_train_and_val(tmp_path, caplog):
    write_linked_folder(tmp_path, tmp_path / "outside")
    os.symlink(tmp_path / "train/3/0.png", tmp_path / "val/5/leak.png")
    with caplog.at_level(logging.WARNING, logger="datasets.folder"):
        assert load_dataset("folder", data_dir=tmp_path, image_size=8).num_test == 3
    assert ("1 of the 3 val images are also training images, so test accuracy overstates: "
            "val/5/leak.png (the same file as train/3/0.png)") in caplog.text
    os.symlink("../3/0.png", tmp_path / "train/5/zero.png")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'train/5/zero.png'} and "
                                         f"{tmp_path / 'train/3/0.png'} are the same file, "
                                         f"in classes '5' and '3'; an image has one class"):
        load_dataset("folder", data_dir=tmp_path, image_size=8)


def test_folder_training_survives_files_that_fail_to_decode(tmp_path, monkeypatch):
    write_folder(tmp_path)
    # As if the up-front check had let every file through.
    monkeypatch.setattr(folder, "_check_image_file", lambda path: None)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=16)
    assert ds.num_train == 10 and not ds.skipped_files
    images, _ = all_batches(ds.train(3, seed=0))
    assert images.shape == (6, 16, 16, 3)



# --- augmentation choices ---

@pytest.mark.parametrize("augmentation", ["bogus", "Inception", None])
def test_unknown_augmentation_lists_the_valid_ones(augmentation):
    with pytest.raises(ValueError, match=f"Unknown augmentation {augmentation!r}; valid: "
                                         + ", ".join(AUGMENTATIONS)):
        load_dataset("digits", augmentation=augmentation)


def test_builtin_datasets_take_an_explicit_augmentation(digits):
    assert digits.augmentation == "zero-pad 2 + random 32x32 crop (no flip)"
    originals, _ = first_batch(digits.train(64, shuffle=False, augment=False))
    flipping = load_dataset("digits", augmentation="pad_crop_flip")
    assert flipping.augmentation == "zero-pad 4 + random 32x32 crop + horizontal flip"
    images, _ = first_batch(flipping.train(64, shuffle=False, seed=1))
    assert any(matches_any(image, shifted(original[:, ::-1], 4))
               and not matches_any(image, shifted(original, 4))
               for original, image in zip(originals, images))
    plain = load_dataset("digits", augmentation="none")
    assert plain.augmentation.startswith("none")
    np.testing.assert_array_equal(first_batch(plain.train(64, shuffle=False, seed=1))[0],
                                  originals)
    with pytest.raises(ValueError, match="'inception' .* is for the 'folder' dataset; .*32x32 "
                                         "digits.*'auto', 'pad_crop_flip', 'pad_crop', 'none'"):
        load_dataset("digits", augmentation="inception")


# --- MNIST and Fashion-MNIST, from tiny IDX files ---

def write_idx(folder, *, gz, num_train=30, num_test=10, seed=0):
    """Writes the four IDX files of a tiny dataset; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    expected = {}
    for split, n in (("train", num_train), ("test", num_test)):
        images = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)  # no 0: borders stand out
        labels = (np.arange(n) % 10).astype(np.uint8)
        writers.write_idx(folder, split, images, labels, gz=gz)
        expected[split] = images, labels
    return expected


def assert_padded(images, originals):
    """32x32x3 images holding the 28x28 originals unchanged at [2:30, 2:30], zeros around."""
    assert images.shape == (len(originals), 32, 32, 3) and images.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(images[:, 2:30, 2:30, c], originals)
    border = images.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trips_padded_not_resampled(tmp_path, name, gz):
    expected = write_idx(tmp_path, gz=gz)
    ds = load_dataset(name, data_dir=tmp_path)
    assert (ds.num_train, ds.num_test, ds.image_shape) == (30, 10, (32, 32, 3))
    assert ds.class_names == idx.SOURCES[name].class_names and ds.num_classes == 10
    assert all("\n" not in n for n in ds.class_names)
    images, labels = ds.test_arrays()
    assert_padded(images, expected["test"][0])
    np.testing.assert_array_equal(labels, expected["test"][1])
    train_images, train_labels = all_batches(ds.train(8, shuffle=False, augment=False))
    assert_padded(train_images.astype(np.uint8), expected["train"][0])
    np.testing.assert_array_equal(train_labels, expected["train"][1])


def test_fashion_mnist_names_and_mnist_digits():
    assert idx.SOURCES["mnist"].class_names == tuple("0123456789")
    assert idx.SOURCES["fashion_mnist"].class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot")


def test_mnist_npz_as_keras_saves_it(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "y_train": np.arange(12, dtype=np.uint8) % 10,
              "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "y_test": np.arange(5, dtype=np.uint8)}
    np.savez(tmp_path / "mnist.npz", **arrays)
    for data_dir in (tmp_path / "mnist.npz", tmp_path):
        ds = load_dataset("mnist", data_dir=data_dir)
        assert (ds.num_train, ds.num_test) == (12, 5)
        images, labels = ds.test_arrays()
        assert_padded(images, arrays["x_test"])
        np.testing.assert_array_equal(labels, arrays["y_test"])
    # The Keras cache: mnist.npz in it, Fashion-MNIST in its fashion-mnist/ folder.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    shutil.copy(tmp_path / "mnist.npz", tmp_path / "datasets")
    assert load_dataset("mnist").num_train == 12
    write_idx(tmp_path / "datasets" / "fashion-mnist", gz=True, num_train=7)
    assert load_dataset("fashion_mnist").num_train == 7
    np.savez(tmp_path / "objects.npz", x_train=np.array([None]), y_train=arrays["y_train"])
    with pytest.raises(ValueError, match="objects.npz is not a readable mnist.npz"):
        load_dataset("mnist", data_dir=tmp_path / "objects.npz")


def test_mnist_npz_labels_as_columns_are_read_and_other_shapes_named(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "y_train": (np.arange(12, dtype=np.uint8) % 10)[:, None],
              "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "y_test": np.arange(5, dtype=np.uint8)[None, :]}
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    ds = load_dataset("mnist", data_dir=path)
    assert (ds.num_train, ds.num_test) == (12, 5)
    np.testing.assert_array_equal(ds.test_arrays()[1], np.arange(5))
    np.testing.assert_array_equal(all_batches(ds.train(4, shuffle=False))[1],
                                  np.arange(12) % 10)
    for y_train, words in ((np.zeros((12, 2), np.uint8), "uint8 (12, 2)"),
                           (np.arange(12.0), "float64 (12,)"),
                           (np.array(3, np.uint8), "uint8 ()")):
        np.savez(path, **{**arrays, "y_train": y_train})
        with pytest.raises(ValueError) as info:
            load_dataset("mnist", data_dir=path)
        assert str(info.value) == (f"y_train in {path} is {words}; expected integer class "
                                   f"labels 0..9 of shape (N,), one per image.")


@pytest.mark.parametrize("name, flips", [("mnist", False), ("fashion_mnist", True)])
def test_idx_augmentation_shifts_and_flips_only_clothes(tmp_path, name, flips):
    write_idx(tmp_path, gz=True, num_train=60)
    ds = load_dataset(name, data_dir=tmp_path)
    flip_words = " + horizontal flip" if flips else " (no flip)"
    assert ds.augmentation.startswith("zero-pad 4 + random 32x32 crop" + flip_words)
    originals, _ = all_batches(ds.train(60, shuffle=False, augment=False))
    augmented, _ = all_batches(ds.train(60, shuffle=False, seed=2))
    flipped = 0
    for original, image in zip(originals, augmented):
        straight = matches_any(image, shifted(original, 4))
        mirrored = matches_any(image, shifted(original[:, ::-1], 4))
        assert straight or mirrored
        flipped += mirrored and not straight
    assert (flipped > 10) if flips else (flipped == 0)


def test_idx_not_found_offline_names_every_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # offline: tests/conftest.py
    nowhere = tmp_path / "system"
    monkeypatch.setitem(idx.SOURCES, "fashion_mnist", dataclasses.replace(
        idx.SOURCES["fashion_mnist"], system_folder=str(nowhere)))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion_mnist")
    message = str(info.value)
    assert "\n" not in message
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    urls = ", ".join(idx.URL + name for name in idx.FASHION_MNIST_DOWNLOAD)
    assert message == (
        f"Fashion-MNIST (not in {cache}, {nowhere}): 4 files not in the cache, and downloads "
        f"are off (RESNET_KERAS_OFFLINE=1 or --offline): get {urls} and put them in {cache}; "
        f"or on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (it installs them in "
        f"{nowhere}), or pass data_dir=<a folder holding them>.")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"MNIST not found: looked for mnist.npz .* in "
                                                f"{tmp_path / 'empty'}\\. Nothing is downloaded "
                                                f"into a data_dir") as info:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    assert "apt-get" not in str(info.value)


def test_idx_malformed_files_are_named(tmp_path):
    write_idx(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    content = images.read_bytes()
    images.write_bytes(np.array([2049], ">u4").tobytes() + content[4:])
    with pytest.raises(ValueError, match=f"{images} is not an IDX images file: magic number "
                                         f"2049, expected 2051"):
        load_dataset("mnist", data_dir=tmp_path)
    images.write_bytes(content[:-100])
    with pytest.raises(ValueError, match=f"{images} is truncated or corrupt: its header "
                                         f"promises 30 images"):
        load_dataset("mnist", data_dir=tmp_path)
    images.write_bytes(content[:10])
    with pytest.raises(ValueError, match="shorter than its 16-byte header"):
        load_dataset("mnist", data_dir=tmp_path)
    images.write_bytes(content)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(writers.idx_bytes(np.zeros(9, np.uint8), 2049))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte holds 10 images but "
                                         f"{labels} holds 9 labels"):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    labels.write_bytes(writers.idx_bytes(np.full(10, 10, np.uint8), 2049))
    with pytest.raises(ValueError, match="labels outside 0..9"):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    labels.rename(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="incomplete MNIST folder: t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_truncated_gzip_is_named(tmp_path):
    write_idx(tmp_path, gz=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-20])
    with pytest.raises(ValueError, match=f"{labels} is not a readable gzip file, truncated"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


def test_idx_takes_only_native_size(tmp_path):
    write_idx(tmp_path, gz=True)
    with pytest.raises(ValueError, match="image_size=28 applies to the 'folder' dataset only"):
        load_dataset("mnist", data_dir=tmp_path, image_size=28)


def test_real_fashion_mnist_when_installed():
    folder_ = idx.SOURCES["fashion_mnist"].system_folder
    if not os.path.isfile(os.path.join(folder_, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"Fashion-MNIST is not installed in {folder_} "
                    "(apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion_mnist", data_dir=folder_)
    assert (ds.num_train, ds.num_test, ds.num_classes) == (60_000, 10_000, 10)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    images, labels = ds.test_arrays()
    assert np.bincount(labels).tolist() == [1000] * 10
    assert not images[:, :2].any() and not images[:, 30:].any()
    assert images.max() == 255


# --- folder: augmentation choices and decoding once ---

def write_small_folder(root, n=6, side=20):
    rng = np.random.default_rng(3)
    for i in range(n):
        save(root / f"train/{'ab'[i % 2]}/{i}.png",
             rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8), "PNG")
    save(root / "val/a/v.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "PNG")


@pytest.mark.parametrize("augmentation, image_size, words", [
    ("auto", 32, "evaluation resize and center crop, then zero-pad 4 + random 32x32 crop + "
                 "horizontal flip"),
    ("auto", 128, folder.INCEPTION),
    ("auto", None, folder.INCEPTION),
    ("inception", 32, folder.INCEPTION),
    ("pad_crop", 64, "evaluation resize and center crop, then zero-pad 8 + random 64x64 crop "
                     "(no flip)"),
    ("none", 32, "none (trains on the evaluation images)"),
])
def test_folder_augmentation_words(tmp_path, augmentation, image_size, words):
    write_small_folder(tmp_path)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=image_size,
                      augmentation=augmentation)
    assert ds.augmentation == words


@pytest.mark.parametrize("augmentation, flips", [("pad_crop_flip", True), ("pad_crop", False),
                                                 ("none", False)])
def test_folder_shift_augmentations_act_on_the_evaluation_image(tmp_path, augmentation, flips):
    write_small_folder(tmp_path, n=40)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=16, augmentation=augmentation)
    originals, _ = all_batches(ds.train(40, shuffle=False, augment=False))
    augmented, _ = all_batches(ds.train(40, shuffle=False, seed=4))
    if augmentation == "none":
        np.testing.assert_array_equal(augmented, originals)
        return
    flipped = 0
    for original, image in zip(originals, augmented):
        straight = matches_any(image, shifted(original, 2))  # 16 / 8
        mirrored = matches_any(image, shifted(original[:, ::-1], 2))
        assert straight or mirrored
        flipped += mirrored and not straight
    assert (flipped > 5) if flips else (flipped == 0)


def remove_images(root):
    for path in root.rglob("*.png"):
        path.unlink()


def test_folder_decodes_small_images_once(tmp_path):
    write_small_folder(tmp_path)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=16)
    plain = ds.train(3, shuffle=False, augment=False)
    augmented = ds.train(3, shuffle=False, seed=0)
    test = ds.test(1)
    first = [all_batches(p)[0] for p in (plain, augmented, test)]
    remove_images(tmp_path)
    second = [all_batches(p)[0] for p in (plain, augmented, test)]
    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[2], first[2])
    # Augmented afresh every pass, from the images kept in memory.
    assert second[1].shape == first[1].shape == (6, 16, 16, 3)
    assert not np.array_equal(second[1], first[1])
    for original, image in zip(first[0], second[1]):
        assert matches_any(image, shifted(original, 2) + shifted(original[:, ::-1], 2))


def test_folder_above_the_memory_budget_decodes_every_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(input_pipeline, "DECODED_CACHE_BYTES", 16 * 16 * 3 * 5)  # 5 of 6 images
    write_small_folder(tmp_path)
    ds = load_dataset("folder", data_dir=tmp_path, image_size=16, augmentation="pad_crop")
    train, test = ds.train(2, shuffle=False, augment=False), ds.test(1)
    assert len(all_batches(train)[1]) == 6 and len(all_batches(test)[1]) == 1
    remove_images(tmp_path)
    assert len(list(train)) == 0  # read again, and gone
    assert len(all_batches(test)[1]) == 1  # 1 image fits: kept


# --- downloads into the Keras cache, from a mirror on 127.0.0.1 ---

@pytest.fixture
def mirror(tmp_path, monkeypatch):
    from loopback import Mirror, forget_proxies  # tests/ is on sys.path

    served = Mirror()
    yield served
    served.close()
    forget_proxies()


def _serve(mirror, monkeypatch, tmp_path, files):
    """Serves `{url: bytes}` with their sha256 listed, and points downloads there."""
    for url, data in files.items():
        mirror.add(url, data)
    mirror.point(monkeypatch, tmp_path / "keras", tmp_path / "SHA256SUMS")


def test_fashion_mnist_downloads_its_idx_files_once(tmp_path, monkeypatch, mirror):
    monkeypatch.setitem(idx.SOURCES, "fashion_mnist", dataclasses.replace(
        idx.SOURCES["fashion_mnist"], system_folder=str(tmp_path / "no-debian-package")))
    expected = write_idx(tmp_path / "published", gz=True)
    _serve(mirror, monkeypatch, tmp_path, {
        idx.URL + name: (tmp_path / "published" / name).read_bytes()
        for name in idx.FASHION_MNIST_DOWNLOAD})
    ds = load_dataset("fashion_mnist")
    assert sorted(mirror.requests) == sorted(
        f"/storage.googleapis.com/tensorflow/tf-keras-datasets/{name}"
        for name in idx.FASHION_MNIST_DOWNLOAD)
    assert_padded(ds.test_arrays()[0], expected["test"][0])
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted([".fetch.lock", *idx.FASHION_MNIST_DOWNLOAD])
    load_dataset("fashion_mnist")
    assert len(mirror.requests) == 4
    # A download stopped between files leaves a folder the next run completes.
    (cache / "t10k-images-idx3-ubyte.gz").unlink()
    assert load_dataset("fashion_mnist").num_test == 10
    assert mirror.requests[4:] == [
        "/storage.googleapis.com/tensorflow/tf-keras-datasets/t10k-images-idx3-ubyte.gz"]


def test_mnist_and_cifar_download_as_keras_datasets_names_them(tmp_path, monkeypatch, mirror):
    rng = np.random.default_rng(2)
    npz = io.BytesIO()
    np.savez(npz, x_train=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
             y_train=np.arange(12, dtype=np.uint8) % 10,
             x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
             y_test=np.arange(5, dtype=np.uint8))
    archive, _, _ = write_cifar(tmp_path / "published", "cifar10", layout="archive_file")
    _serve(mirror, monkeypatch, tmp_path, {
        idx.URL + "mnist.npz": npz.getvalue(),
        cifar.URL + "cifar-10-python.tar.gz": archive.read_bytes()})
    assert load_dataset("mnist").num_test == 5
    assert load_dataset("cifar10").num_train == 5 * CIFAR_PER_BATCH
    assert load_dataset("cifar10").num_test == CIFAR_PER_BATCH
    assert mirror.requests == ["/storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
                               "/www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    cache = tmp_path / "keras" / "datasets"
    assert {"mnist.npz", "cifar-10-batches-py.tar.gz"} <= set(os.listdir(cache))


def test_published_dataset_hashes_are_keras_datasets_own():
    # keras.datasets (keras/datasets/*.py) pins the same digests; tf_keras's
    # copy has MNIST's and CIFAR's (its Fashion-MNIST has none).
    import inspect

    from tf_keras.src.datasets import cifar10, cifar100, mnist

    for module, digest in ((mnist, idx.MNIST_DOWNLOAD["mnist.npz"]),
                           (cifar10, cifar.FORMATS["cifar10"].sha256),
                           (cifar100, cifar.FORMATS["cifar100"].sha256)):
        assert digest in inspect.getsource(module)


# --- TensorFlow Datasets, from tiny datasets prepared here ---

TFDS_CLASSES = ["cat", "dog", "fox"]


def _tfds_examples(n, offset):
    """`n` (key, example) of one flat colour each, 9-13 pixels high, label i % 3."""
    return [(i, {"image": np.full((9 + i % 5, 12, 3), offset + i, np.uint8),
                 "label": i % len(TFDS_CLASSES)}) for i in range(n)]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tfds data dir holding `tiny_pets` (train, validation, test) and `tiny_train_only`."""
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(names=TFDS_CLASSES)})
    for name, splits in (("tiny_pets", {"train": (12, 0), "validation": (6, 100),
                                         "test": (9, 200)}),
                         ("tiny_train_only", {"train": (30, 0)})):
        tfds.dataset_builders.store_as_tfds_dataset(
            name=name, version="1.0.0", features=features, data_dir=str(root),
            split_datasets={s: _tfds_examples(n, offset) for s, (n, offset) in splits.items()})
    return root


def test_tfds_dataset_reads_like_a_folder_with_its_validation_split(tfds_dir):
    ds = load_dataset("tfds:tiny_pets", data_dir=tfds_dir, image_size=16)
    assert ds.class_names == tuple(TFDS_CLASSES) and ds.name == "tfds:tiny_pets"
    assert (ds.num_train, ds.num_val, ds.num_test, ds.image_shape) == (12, 6, 9, (16, 16, 3))
    images, labels = ds.test_arrays()
    # Resized and center-cropped like a folder's images: each keeps its one colour,
    # which says which example it is (tfds stores them shuffled), and so its label.
    colours = images[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(images, np.broadcast_to(
        images[:, :1, :1, :1], images.shape))
    assert sorted(colours) == list(range(200, 209))
    np.testing.assert_array_equal(labels, (colours - 200) % 3)
    assert set(all_batches(ds.val(4))[0].reshape(6, -1)[:, 0]) == set(range(100, 106))
    assert first_batch(ds.train(4, seed=1))[0].shape == (4, 16, 16, 3)
    assert ds.augmentation == folder.training_augmentation("auto", size=16)[1]
    with pytest.raises(ValueError, match="tfds:tiny_pets has its own validation split"):
        load_dataset("tfds:tiny_pets", data_dir=tfds_dir, val_split=0.2)


def test_tfds_dataset_with_only_train_holds_out_its_test_split(tfds_dir):
    ds = load_dataset("tfds:tiny_train_only", data_dir=tfds_dir, image_size=8, val_split=6)
    assert (ds.num_train, ds.num_val, ds.num_test) == (21, 6, 3)
    assert sorted(ds.test_arrays()[1]) == [0, 1, 2]  # stratified: one of each class
    again = load_dataset("tfds:tiny_train_only", data_dir=tfds_dir, image_size=8, seed=5)
    np.testing.assert_array_equal(again.test_arrays()[0], ds.test_arrays()[0])


def test_tfds_errors_are_one_line(tfds_dir, tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("tfds:no_such_dataset_here", data_dir=tfds_dir)
    assert "\n" not in str(info.value)
    assert "TensorFlow Datasets has no dataset 'no_such_dataset_here'" in str(info.value)
    # Downloads are off in the tests (tests/conftest.py): a registered, unprepared dataset.
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("tfds:mnist", data_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"tfds:mnist is not prepared in {tmp_path / 'mnist'}")
    assert f"`tfds build mnist --data_dir DIR`, then copy DIR to {tmp_path}" in str(info.value)
    for bad in ("tfds:", "tfds:a:b:c"):
        with pytest.raises(ValueError, match="is not tfds:NAME or tfds:NAME:CONFIG"):
            load_dataset(bad)


def test_tfds_names_pass_the_configuration():
    from job import config as config_lib

    config = config_lib.resolve(overrides={"data.dataset": "tfds:oxford_flowers102"})
    assert config.data.dataset == "tfds:oxford_flowers102"
    with pytest.raises(ValueError, match="data.dataset='imagenet' is not valid. Valid values: "
                                         "digits, .*, or tfds:NAME"):
        config_lib.resolve(overrides={"data.dataset": "imagenet"})
