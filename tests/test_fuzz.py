"""A fixed-seed set of corrupted inputs (images, labels, list lines, config values), each
through train.py: every one exits 1 with one line and no traceback, none hangs, and a
checkpoint already in save_dir is left as it was."""

import hashlib
import os
import random
import shutil

import cv2
import numpy as np
import pytest
import yaml
from conftest import TEST_CONFIGS, run_cli

SEED = 14
TINY = os.path.join(TEST_CONFIGS, 'tiny_student.yml')


def _truncate(rng, path):
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data) // 4, len(data) * 3 // 4)])


def _garbage(rng, path):
    path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))


def _empty(rng, path):
    path.write_bytes(b'')


def _label_value(rng, path):
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[rng.randrange(label.shape[0]), rng.randrange(label.shape[1])] = rng.randrange(2, 255)
    cv2.imwrite(str(path), label)


def _label_rgb(rng, path):
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.dstack([label] * 3))


def _label_size(rng, path):
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), label[: -rng.randrange(1, 8)])


FILE_FAULTS = {
    'image': [_truncate, _garbage, _empty],
    'label': [_truncate, _garbage, _label_value, _label_rgb, _label_size],
}


def _list_line(rng, lines):
    image, label = lines[0].split()
    return rng.choice(
        [
            f'{image} {label} {label}',  # three fields
            image,  # no label
            f'{image} missing/{rng.randrange(10**6)}.png',  # a label that does not exist
            f'{image}\t{label}',  # wrong separator
        ]
    )


# (config key path, a wrong value); the seed picks which of each group run.
CONFIG_FAULTS = [
    (('batch_size',), 'abc'),
    (('batch_size',), -2),
    (('iters',), 'many'),
    (('iters',), 0),
    (('lr_scheduler', 'learning_rate'), 'fast'),
    (('model', 'num_classes'), 0),
    (('model', 'backbone'), 'ResNet18_vd'),
    (('train_dataset', 'transforms'), 'Resize'),
    (('optimizer', 'momentum'), 'high'),
    (('loss', 'coef'), []),
    (('train_dataset', 'transforms', 0, 'target_size'), [-64, 64]),
]


def cases():
    """[(case id, kind, parameter)], the same for every run."""
    rng = random.Random(SEED)
    found = [
        (f'image-{fault.__name__[1:]}', 'image', fault)
        for fault in rng.sample(FILE_FAULTS['image'], 2)
    ]
    found += [
        (f'label-{fault.__name__[1:]}', 'label', fault)
        for fault in rng.sample(FILE_FAULTS['label'], 3)
    ]
    found += [('list-line', 'list', rng.randrange(2)), ('list-binary', 'list-binary', None)]
    found += [
        (f'config-{".".join(map(str, key))}={value!r}', 'config', (key, value))
        for key, value in rng.sample(CONFIG_FAULTS, 3)
    ]
    return found


def digests(folder):
    return {
        os.path.relpath(os.path.join(d, n), folder): hashlib.sha256(
            open(os.path.join(d, n), 'rb').read()
        ).hexdigest()
        for d, _, names in os.walk(folder)
        for n in names
    }


@pytest.fixture(scope='module')
def saved_run(tmp_path_factory, teacher_weights):
    """A save_dir holding a checkpoint (and log) that no failing run may touch."""
    save_dir = tmp_path_factory.mktemp('saved') / 'run'
    shutil.copytree(os.path.dirname(os.path.dirname(teacher_weights)), save_dir)
    return save_dir


@pytest.mark.parametrize('case_id,kind,parameter', cases(), ids=[c[0] for c in cases()])
def test_corrupted_input_is_one_line_and_loses_nothing(
    case_id, kind, parameter, tmp_path, synthetic_root, saved_run
):
    rng = random.Random(f'{SEED}-{case_id}')
    root = tmp_path / 'data'
    with open(os.path.join(synthetic_root, 'train_list.txt')) as f:
        lines = [line.strip() for line in f if line.strip()][:2]
    for line in lines:  # two samples: batch_size 2 reads both in the first step
        for rel in line.split():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(synthetic_root, rel), root / rel)
    (root / 'val_list.txt').write_text(lines[1] + '\n')
    config = TINY
    if kind in FILE_FAULTS:
        parameter(rng, root / lines[0].split()[0 if kind == 'image' else 1])
    elif kind == 'list':
        lines[parameter] = _list_line(rng, lines)
    elif kind == 'list-binary':
        lines.append(bytes(rng.randrange(128, 256) for _ in range(20)).decode('latin1'))
    (root / 'train_list.txt').write_bytes(''.join(f'{line}\n' for line in lines).encode('latin1'))
    opts = [f'train_dataset.dataset_root={root}', f'val_dataset.dataset_root={root}']
    if kind == 'config':
        key, value = parameter
        with open(TINY) as f:
            dic = yaml.safe_load(f)
        dic['_base_'] = os.path.join(TEST_CONFIGS, dic['_base_'])
        if key[0] not in dic:
            with open(dic['_base_']) as f:
                base = yaml.safe_load(f)
            dic[key[0]] = base.get(key[0]) or {}
        node = dic
        for part in key[:-1]:
            node = node[part]
        node[key[-1]] = value
        config = str(tmp_path / 'config.yml')
        with open(config, 'w') as f:
            yaml.safe_dump(dic, f)

    iters = [] if kind == 'config' and parameter[0] == ('iters',) else ['--iters', '1']
    before = digests(saved_run)
    result = run_cli(
        'train.py',
        '--config',
        config,
        *iters,
        '--save_dir',
        str(saved_run),
        '--opts',
        *opts,
        timeout=90,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr[-3000:]
    assert digests(saved_run) == before
