"""Slice redundancy on the real CT sample, checked against numpy's own correlation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from workers.volume.redundancy import DEFAULT_NCC_THRESHOLD, select_distinct_slices, slice_redundancy


@pytest.fixture(scope="module")
def ct(request) -> np.ndarray:
    path = request.getfixturevalue("shared_data") / "nifti" / "totalsegmentator_example_ct.nii.gz"
    return np.asanyarray(nib.load(path).dataobj)


def test_adjacent_ncc_matches_numpy_corrcoef(ct):
    r = slice_redundancy(ct, axis=2)
    ref = [np.corrcoef(ct[:, :, k].ravel(), ct[:, :, k + 1].ravel())[0, 1] for k in range(ct.shape[2] - 1)]
    assert r["n_slices"] == ct.shape[2] and r["axis"] == 2
    assert r["adjacent_ncc_min"] == pytest.approx(min(ref), abs=1e-6)
    assert r["adjacent_ncc_mean"] == pytest.approx(float(np.mean(ref)), abs=1e-6)
    assert r["near_duplicate_pairs"] == sum(v >= DEFAULT_NCC_THRESHOLD for v in ref)
    assert 0.0 <= r["redundancy_score"] < 1.0


def test_greedy_selection_against_a_direct_loop(ct):
    keep = select_distinct_slices(ct, axis=2)
    expected, last = [0], 0
    for k in range(1, ct.shape[2]):
        if np.corrcoef(ct[:, :, last].ravel(), ct[:, :, k].ravel())[0, 1] < DEFAULT_NCC_THRESHOLD:
            expected.append(k)
            last = k
    assert keep == expected
    r = slice_redundancy(ct, axis=2)
    assert r["distinct_slices"] == len(keep) and r["redundancy_score"] == round(
        1 - len(keep) / ct.shape[2], 6
    )


def test_duplicated_slices_raise_the_score_and_are_found_exactly(ct):
    doubled = np.repeat(ct, 2, axis=2)  # every slice twice: what a 2x over-sampled series looks like
    base, dup = slice_redundancy(ct), slice_redundancy(doubled)
    assert dup["exact_duplicate_pairs"] == ct.shape[2] and base["exact_duplicate_pairs"] == 0
    assert dup["hash_duplicate_pairs"] >= ct.shape[2]
    assert dup["distinct_slices"] == base["distinct_slices"]
    assert dup["redundancy_score"] > base["redundancy_score"]


def test_axis_argument_for_z_first_stacks(ct):
    zyx = np.transpose(ct, (2, 1, 0))  # DICOM series layout (Z, Y, X)
    a, b = slice_redundancy(ct, axis=2), slice_redundancy(zyx, axis=0)
    for key in ("n_slices", "adjacent_ncc_mean", "adjacent_ncc_min", "distinct_slices", "redundancy_score"):
        assert a[key] == b[key]


def test_constant_and_tiny_volumes(ct):
    flat = np.full((8, 8, 5), -1000, dtype=np.int16)
    r = slice_redundancy(flat)
    assert r["distinct_slices"] == 1 and r["exact_duplicate_pairs"] == 4 and r["adjacent_ncc_min"] == 1.0
    one = slice_redundancy(ct[:, :, :1])
    assert one["n_slices"] == 1 and one["adjacent_ncc_mean"] is None and one["redundancy_score"] == 0.0
    with pytest.raises(ValueError):
        slice_redundancy(ct[:, :, 0])
