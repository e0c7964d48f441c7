"""tools/prepare_data.py and paddleseg_ext/datasets behind it: synthetic layout,
determinism, --from_zip and the threshold baseline."""

import filecmp
import shutil
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


# --------------------------------------------------------------------------------------------
# --images DIR --masks DIR: your own data in PaddleSeg's generic layout


@pytest.fixture
def own_folders(tmp_path, synthetic_set):
    """A user's folders: images/*.jpg and masks/*.png, same stems (the synthetic set's)."""
    images, masks = tmp_path / 'my_images', tmp_path / 'my_masks'
    shutil.copytree(synthetic_set / 'JPEGImages', images)
    shutil.copytree(synthetic_set / 'Annotations', masks)
    return images, masks


def prepare_own(images, masks, out, *extra):
    return run_cli('--images', str(images), '--masks', str(masks), '--out', str(out), *extra)


def test_own_folders_become_paddleseg_generic_dataset(tmp_path, own_folders):
    from paddleseg.transforms import Normalize

    from paddleseg_ext.datasets import Dataset

    images, masks = own_folders
    out = tmp_path / 'my_dataset'
    result = prepare_own(images, masks, out, '--val_fraction', '0.25', '--seed', '1')
    assert result.returncode == 0, result.stderr
    assert 'train 9, val 3' in result.stdout and 'set num_classes: 2' in result.stdout
    train = read_pairs(out, 'train_list.txt')
    val = read_pairs(out, 'val_list.txt')
    assert len(train) == 9 and len(val) == 3 and not set(train) & set(val)
    for image_path, label_path in train + val:
        source = images / image_path.name
        assert image_path.read_bytes() == source.read_bytes()
        assert label_path.read_bytes() == (masks / f'{source.stem}.png').read_bytes()
    # The same seed, the same split; another seed, another.
    again = prepare_own(images, masks, tmp_path / 'again', '--val_fraction', '0.25', '--seed', '1')
    assert (
        again.returncode == 0
        and (tmp_path / 'again/val_list.txt').read_text() == (out / 'val_list.txt').read_text()
    )
    # paddleseg's generic Dataset (type: Dataset) reads it as written.
    for mode, key in (('train', 'train_path'), ('val', 'val_path')):
        dataset = Dataset(
            mode=mode,
            dataset_root=str(out),
            transforms=[Normalize()],
            num_classes=2,
            **{key: str(out / f'{mode}_list.txt')},
        )
        assert len(dataset) == {'train': 9, 'val': 3}[mode]
        assert set(np.unique(dataset[0]['label'])) <= {0, 1}


def test_own_folders_bad_input_is_one_line_naming_the_file(tmp_path, own_folders):
    images, masks = own_folders
    stems = sorted(p.stem for p in images.iterdir())

    def refused(name, *extra, images=images, masks=masks):
        out = tmp_path / name
        result = prepare_own(images, masks, out, *extra)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith('prepare_data: error: ')
        assert not out.exists(), 'nothing is written before every pair is checked'
        return lines[0]

    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'readme.txt').write_text('no images here')
    assert f"--images '{empty}' holds no images" in refused('e', images=empty)

    (masks / f'{stems[0]}.png').unlink()
    line = refused('missing')
    assert f"image '{images / stems[0]}.jpg' has no mask: expected '{masks / stems[0]}.png'" in line
    shutil.copy(masks / f'{stems[1]}.png', masks / f'{stems[0]}.png')  # a mask of another size

    line = refused('size')
    assert f"mask '{masks / stems[0]}.png' is" in line and 'they must match' in line
    cv2.imwrite(str(masks / f'{stems[0]}.png'), np.full((3, 3), 7, np.uint8))
    cv2.imwrite(str(images / f'{stems[0]}.jpg'), np.zeros((3, 3, 3), np.uint8))

    line = refused('range', '--num_classes', '2')
    assert f"mask '{masks / stems[0]}.png' holds value 7, outside [0, 2)" in line
    cv2.imwrite(str(masks / f'{stems[0]}.png'), np.zeros((3, 3, 3), np.uint8))
    assert 'single-channel PNGs of class ids' in refused('rgb')
    cv2.imwrite(str(masks / f'{stems[0]}.png'), np.zeros((3, 3), np.uint8))

    (images / f'{stems[2]}.jpg').write_bytes(b'garbage')
    assert f"image '{images / stems[2]}.jpg' cannot be read" in refused('unreadable')


def test_own_folders_with_0_255_masks_are_refused(tmp_path, own_folders):
    images, masks = own_folders
    for mask in masks.iterdir():
        label = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(mask), (label * 255).astype(np.uint8))
    result = prepare_own(images, masks, tmp_path / 'out')
    assert result.returncode == 1
    assert 'convert the masks to class ids 0/1' in result.stderr


def test_missing_dataset_root_points_at_own_data_not_into_it(tmp_path):
    from paddleseg_ext.datasets import Dataset, OpticDiscSeg
    from paddleseg_ext.errors import UserInputError

    root = str(tmp_path / 'my_optic_disc')
    with pytest.raises(UserInputError) as caught:
        OpticDiscSeg(dataset_root=root, transforms=[])
    message = str(caught.value)
    assert (
        '--images IMAGES --masks MASKS' in message
        and f'--from_zip optic_disc_seg.zip --out {root}' in message
    )
    assert f'--synthetic 200 --seed 0 --out {root}' not in message
    with pytest.raises(UserInputError) as caught:
        Dataset('train', root, [], num_classes=2, train_path=f'{root}/train_list.txt')
    assert f'--images IMAGES --masks MASKS --out {root}' in str(caught.value)
