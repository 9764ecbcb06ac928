import numpy as np
import pytest

from compressor.data import Dataset, digits_arrays, load_dataset
from compressor.errors import DataError
from compressor.config.recipe import DataSource, InputSpec

PIXELS = [InputSpec(name="pixels", shape=[1, 1, 8, 8])]


def test_digits_are_real_images_in_unit_range_with_int_labels():
    x, y = digits_arrays("all")
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_digits_train_and_test_splits_are_disjoint_and_cover_everything():
    xa, _ = digits_arrays("all")
    xtr, _ = digits_arrays("train")
    xte, _ = digits_arrays("test")
    assert len(xtr) + len(xte) == len(xa)
    train_rows = {r.tobytes() for r in xtr}
    # load_digits holds a handful of pixel-identical images; count rows, not objects.
    shared = sum(r.tobytes() in train_rows for r in xte)
    assert shared <= 5


def test_digits_test_split_is_stratified():
    _, ytr = digits_arrays("train")
    _, yte = digits_arrays("test")
    ptr = np.bincount(ytr, minlength=10) / len(ytr)
    pte = np.bincount(yte, minlength=10) / len(yte)
    assert np.abs(ptr - pte).max() < 0.01


def test_digits_source_applies_split_and_limit():
    ds = load_dataset(DataSource(source="digits", split="test", limit=100), PIXELS)
    assert len(ds) == 100 and ds.inputs["pixels"].shape == (100, 1, 8, 8)
    np.testing.assert_array_equal(ds.labels, digits_arrays("test")[1][:100])


def test_npz_source_is_keyed_by_input_name_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(20, 7)).astype(np.int64)
    mask = np.ones((20, 7), dtype=np.float64)
    labels = rng.integers(0, 3, size=20)
    np.savez(tmp_path / "d.npz", ids=ids, mask=mask, labels=labels)
    inputs = [InputSpec(name="ids", shape=[1, 7], dtype="int64"), InputSpec(name="mask", shape=[1, 7])]
    ds = load_dataset(DataSource(source="d.npz"), inputs, base_dir=tmp_path)
    np.testing.assert_array_equal(ds.inputs["ids"], ids)
    assert ds.inputs["mask"].dtype == np.float32  # cast to the declared dtype
    np.testing.assert_array_equal(ds.labels, labels)


def test_npz_keys_that_do_not_name_the_inputs_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((4, 7)), b=np.zeros((4, 7)))
    inputs = [InputSpec(name="ids", shape=[1, 7]), InputSpec(name="mask", shape=[1, 7])]
    with pytest.raises(DataError, match=r"do not name the model inputs \['ids', 'mask'\]"):
        load_dataset(DataSource(source=str(tmp_path / "d.npz")), inputs)


def test_unreadable_npz_is_a_data_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(DataSource(source="bad.npz"), PIXELS, base_dir=tmp_path)


def test_callable_source_is_imported_from_the_recipe_directory(tmp_path):
    (tmp_path / "mydata_a.py").write_text(
        "import numpy as np\n"
        "def load(split='all'):\n"
        "    n = 12 if split == 'train' else 5\n"
        "    return np.full((n, 1, 8, 8), 0.5, dtype=np.float64), np.arange(n) % 10\n")
    ds = load_dataset(DataSource(source="mydata_a:load", split="train"), PIXELS, base_dir=tmp_path)
    assert len(ds) == 12 and ds.inputs["pixels"].dtype == np.float32
    np.testing.assert_array_equal(ds.labels, np.arange(12) % 10)


def test_callable_returning_a_dataset_keyed_by_another_name_is_a_data_error(tmp_path):
    (tmp_path / "mydata_b.py").write_text(
        "import numpy as np\nfrom compressor.data import Dataset\n"
        "def load():\n    return Dataset({'image': np.zeros((3, 1, 8, 8), np.float32)})\n")
    with pytest.raises(DataError, match="pixels"):
        load_dataset(DataSource(source="mydata_b:load"), PIXELS, base_dir=tmp_path)


def test_missing_callable_module_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot import module 'no_such_module_xyz'"):
        load_dataset(DataSource(source="no_such_module_xyz:load"), PIXELS, base_dir=tmp_path)


def test_sample_shape_mismatch_names_input_and_both_shapes():
    inputs = [InputSpec(name="pixels", shape=[1, 3, 8, 8])]
    with pytest.raises(DataError, match=r"'pixels' has samples of shape \[1, 8, 8\], the model declares \[3, 8, 8\]"):
        load_dataset(DataSource(source="digits"), inputs)


def test_single_array_source_refused_for_a_two_input_model():
    inputs = [InputSpec(name="a", shape=[1, 1, 8, 8]), InputSpec(name="b", shape=[1, 1, 8, 8])]
    with pytest.raises(DataError, match="declares 2 inputs"):
        load_dataset(DataSource(source="digits"), inputs)


def test_dataset_batches_cover_all_samples_in_order():
    ds = Dataset({"x": np.arange(10)[:, None]})
    got = np.concatenate([b["x"] for b in ds.batches(4)])
    np.testing.assert_array_equal(got[:, 0], np.arange(10))
