"""tools/prepare_data.py and paddleseg_ext/datasets behind it: synthetic layout,
determinism, --from_zip and the threshold baseline."""

import filecmp
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / 'tools' / 'prepare_data.py'

from paddleseg_ext.datasets.layout import PrepareDataError, layout_problems  # noqa: E402
from paddleseg_ext.datasets.optic_disc_zip import unpack_zip  # noqa: E402
from paddleseg_ext.datasets.synthetic import make_synthetic  # noqa: E402

N_IMAGES = 12
SMALL = {'min_size': 64, 'max_size': 96}


def read_pairs(root: Path, list_name: str):
    """(image path, label path) pairs of one list file."""
    pairs = []
    for line in (root / list_name).read_text(encoding='utf-8').splitlines():
        image_rel, label_rel = line.split(' ')
        pairs.append((root / image_rel, root / label_rel))
    return pairs


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope='module')
def synthetic_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic') / 'optic_disc_seg'
    make_synthetic(root, N_IMAGES, seed=3, **SMALL)
    return root


def test_synthetic_layout(synthetic_set):
    root = synthetic_set
    assert (root / 'JPEGImages').is_dir() and (root / 'Annotations').is_dir()
    assert layout_problems(root) == []
    train, val, test = (
        read_pairs(root, name) for name in ('train_list.txt', 'val_list.txt', 'test_list.txt')
    )
    assert len(train) + len(val) == N_IMAGES and train and val
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert test == val

    shapes = set()
    for image_path, label_path in train + val:
        assert image_path.parent.name == 'JPEGImages' and image_path.suffix == '.jpg'
        assert label_path.parent.name == 'Annotations' and label_path.suffix == '.png'
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert image.ndim == 3 and image.shape[2] == 3
        assert label.ndim == 2 and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1} and label.any()
        assert image.shape[:2] == label.shape
        assert all(SMALL['min_size'] <= side <= SMALL['max_size'] for side in label.shape)
        shapes.add(label.shape)
    assert len(shapes) > N_IMAGES // 2, 'image sizes should vary'


def test_synthetic_is_deterministic(tmp_path, synthetic_set):
    again = tmp_path / 'again'
    # Rendered in two processes: the same bytes as in one.
    make_synthetic(again, N_IMAGES, seed=3, workers=2, **SMALL)
    names = sorted(
        str(p.relative_to(synthetic_set)) for p in synthetic_set.rglob('*') if p.is_file()
    )
    assert names == sorted(str(p.relative_to(again)) for p in again.rglob('*') if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(synthetic_set, again, names, shallow=False)
    assert mismatch == [] and errors == []

    other_seed = tmp_path / 'other_seed'
    make_synthetic(other_seed, N_IMAGES, seed=4, **SMALL)
    assert (other_seed / 'JPEGImages/0001.jpg').read_bytes() != (
        again / 'JPEGImages/0001.jpg'
    ).read_bytes()


def test_global_brightness_threshold_does_not_solve_it(synthetic_set):
    pairs = read_pairs(synthetic_set, 'train_list.txt') + read_pairs(synthetic_set, 'val_list.txt')
    grays = [cv2.cvtColor(cv2.imread(str(i)), cv2.COLOR_BGR2GRAY) for i, _ in pairs]
    discs = [cv2.imread(str(label), cv2.IMREAD_UNCHANGED) == 1 for _, label in pairs]
    best_iou = 0.0
    for threshold in range(60, 256, 10):
        inter = sum(np.count_nonzero((g >= threshold) & d) for g, d in zip(grays, discs))
        union = sum(np.count_nonzero((g >= threshold) | d) for g, d in zip(grays, discs))
        best_iou = max(best_iou, inter / union)
    assert best_iou < 0.6


def test_refuses_non_empty_output_unless_force(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('not ours')
    with pytest.raises(PrepareDataError, match='--force'):
        make_synthetic(out, 2, seed=0, **SMALL)
    make_synthetic(out, 2, seed=0, force=True, **SMALL)
    assert layout_problems(out) == [] and (out / 'keep.txt').exists()


@pytest.mark.parametrize('top_folder', ['optic_disc_seg/', 'renamed/', ''])
def test_from_zip_unpacks_paddleseg_layout(tmp_path, synthetic_set, top_folder):
    zip_path = tmp_path / 'optic_disc_seg.zip'
    with zipfile.ZipFile(zip_path, 'w') as archive:
        for path in sorted(synthetic_set.rglob('*')):
            archive.write(path, top_folder + path.relative_to(synthetic_set).as_posix())
    out = tmp_path / 'data' / 'optic_disc_seg'
    unpack_zip(zip_path, out)
    assert layout_problems(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in synthetic_set.iterdir())
    assert (out / 'train_list.txt').read_text() == (synthetic_set / 'train_list.txt').read_text()
    assert [p.name for p in out.parent.iterdir()] == ['optic_disc_seg'], (
        'staging folder left behind'
    )


def test_from_zip_wrong_layout_is_one_line(tmp_path):
    zip_path = tmp_path / 'other.zip'
    with zipfile.ZipFile(zip_path, 'w') as archive:
        archive.writestr('stuff/readme.txt', 'not a data set')
    result = run_cli('--from_zip', str(zip_path), '--out', str(tmp_path / 'out'))
    message = result.stderr.strip()
    assert result.returncode == 1, result.stderr
    assert str(zip_path) in message and 'train_list.txt' in message and '\n' not in message
    assert not (tmp_path / 'out').exists()


def test_cli_missing_zip_names_file_and_exits_1(tmp_path):
    missing = tmp_path / 'nowhere' / 'optic_disc_seg.zip'
    result = run_cli('--from_zip', str(missing), '--out', str(tmp_path / 'out'))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and 'not found' in lines[0] and '--synthetic' in lines[0]


def test_cli_without_source_is_one_usage_error():
    result = run_cli()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: prepare_data.py: '), result.stderr
