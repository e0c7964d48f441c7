"""A fixed-seed set of corrupted inputs (images, labels, list lines, config values), each
through train.py: every one exits 1 with one line and no traceback, none hangs, and a
checkpoint already in save_dir is left as it was. Then fixed-seed mutations of real
weights files and configs (below FUZZ_SEED): most in one subprocess through the reader the
CLIs use, a fixed subset through the CLIs themselves."""

import hashlib
import json
import os
import pickletools
import random
import re
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import paddle
import pytest
import yaml
from conftest import (
    REPO_ROOT,
    TEST_CONFIGS,
    data_opts,
    error_line,
    limit_address_space,
    run_cli,
)
from test_weights import TINY_TEACHER, small_layer, trained_objects, write_config

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
    error_line(result)
    assert digests(saved_run) == before


# ---- weights files and configs from a stranger: mutations of real ones ----
#
# FUZZ_COUNTS (220) fixed-seed mutations of a real .pdparams, .pdopt and .pdstates
# (paddle.save output of a trained layer, at pickle protocols 2 and 4) and of real YAML
# configs. All go through the reader the CLIs use (pretrained.load_weights,
# checkpoint.read_checkpoint and check_contents, config.load_config) in one subprocess
# under the 3 GB memory limit, each case printing its outcome: loaded, or one
# UserInputError line; any other exception, a crash, a hang or the memory limit fails the
# test. A fixed subset (CLI_CASES) goes through the real CLIs (val.py, train.py
# --resume_model, train.py --config): exit 0, or exit 1 with one `error:` line.

FUZZ_SEED = 26
WEIGHT_KINDS = {
    'pdparams': 'model.pdparams',
    'pdopt': 'model.pdopt',
    'pdstates': 'train_state.pdstates',
}
FUZZ_COUNTS = {'pdparams': 70, 'pdopt': 45, 'pdstates': 45, 'yaml': 60}
YAML_SOURCES = [
    os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
    os.path.join(TEST_CONFIGS, 'tiny_base.yml'),
    os.path.join(TEST_CONFIGS, 'tiny_cls_student.yml'),
    os.path.join(REPO_ROOT, 'configs', 'cpu', '_base_', 'optic_disc_cpu.yml'),
]
# Byte strings an attacker would splice into a pickle, and text into a config.
PICKLE_SPLICES = [
    b'cos\nsystem\n',
    b'cbuiltins\neval\n',
    b'cbuiltins\nbytearray\n',
    b'cnumpy\nndarray\n',
    b'O8',
    b'\x8e\xff\xff\xff\xff\x00\x00\x00\x00',
    b'r\xff\xff\xff\x7f',
    b']' * 300,
    b'h\x00' * 50,
]
YAML_SPLICES = [
    '!!python/name:os.system',
    '!!python/object/apply:os.system ["true"]',
    '&a ',
    '*a',
    '<<: *a',
    '!!binary aGVsbG8=',
    '!!set {a, b}',
    'norm_layer: nn.LayerNorm',
    '_base_: tiny_student.yml',
    '9' * 5000,
    '[' * 60,
    '\udcff',
    '\t',
    '{',
]


def _structure_positions(data):
    """Offsets of pickle opcodes (not the bytes of large payloads), where a mutation
    changes what is built rather than a number."""
    positions = []
    try:
        for _, _, pos in pickletools.genops(data):
            positions.append(pos)
    except Exception:
        pass
    return positions or [0]


def mutate_bytes(rng, data):
    op = rng.randrange(7)
    structure = _structure_positions(data)
    at = rng.choice(structure) if rng.random() < 0.6 else rng.randrange(len(data))
    if op == 0:  # overwrite a few bytes
        n = rng.randrange(1, 6)
        return data[:at] + bytes(rng.randrange(256) for _ in range(n)) + data[at + n :]
    if op == 1:  # truncate
        return data[: rng.randrange(len(data))]
    if op == 2:  # delete a slice
        return data[:at] + data[at + rng.randrange(1, 64) :]
    if op == 3:  # duplicate a slice
        n = rng.randrange(1, 64)
        return data[:at] + data[at : at + n] + data[at:]
    if op == 4:  # splice what an attacker would
        return data[:at] + rng.choice(PICKLE_SPLICES) + data[at:]
    if op == 5:  # change one opcode byte
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]  # a bit


def mutate_text(rng, text):
    lines = text.splitlines()
    op = rng.randrange(6)
    i = rng.randrange(len(lines))
    if op == 0:
        at = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + rng.choice(':-[]{}&*!|>"\'#%@`,') + lines[i][at + 1 :]
    elif op == 1:
        del lines[i]
    elif op == 2:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif op == 3:
        lines[i] = ' ' * rng.randrange(1, 5) + lines[i]
    elif op == 4:
        at = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + rng.choice(YAML_SPLICES) + lines[i][at:]
    else:
        key = lines[i].split(':')[0]
        lines[i] = f'{key}: {rng.choice(["-1", "abc", "[]", "{}", "null", "1e999", "0x10"])}'
    return '\n'.join(lines) + '\n'


def fuzz_cases(folder):
    """[{'id', 'kind', 'path'}]: the mutated files written under folder (a checkpoint
    folder for .pdopt/.pdstates, the other two files intact), the same for every run."""
    rng = random.Random(FUZZ_SEED)
    originals = {}
    for protocol in (2, 4):
        for kind, name in WEIGHT_KINDS.items():
            path = folder / f'original-{protocol}' / name
            path.parent.mkdir(exist_ok=True)
            paddle.save(trained_objects()[name], str(path), protocol=protocol)
            originals[(kind, protocol)] = path
    texts = {}
    for source in YAML_SOURCES:
        with open(source) as f:
            text = f.read()
        base = re.search(r"^_base_: *'?([^'\n]+)'?", text, re.M)
        if base:  # the copy lives elsewhere: its base by absolute path
            absolute = os.path.join(os.path.dirname(source), base.group(1))
            text = text.replace(base.group(0), f'_base_: {absolute}')
        texts[source] = text
    cases = []
    for kind, count in FUZZ_COUNTS.items():
        for i in range(count):
            case_id = f'{kind}-{i}'
            if kind == 'yaml':
                path = folder / f'{case_id}.yml'
                path.write_text(
                    mutate_text(rng, texts[rng.choice(YAML_SOURCES)]), 'utf-8', 'surrogateescape'
                )
            else:
                original = originals[(kind, rng.choice((2, 4)))]
                checkpoint_dir = folder / case_id
                shutil.copytree(original.parent, checkpoint_dir)
                path = checkpoint_dir / WEIGHT_KINDS[kind]
                path.write_bytes(mutate_bytes(rng, original.read_bytes()))
                if kind != 'pdparams':
                    path = checkpoint_dir
            cases.append({'id': case_id, 'kind': kind, 'path': str(path)})
    return cases


def read_cases(manifest):
    """In a subprocess under the memory limit: each case through the CLIs' reader; one
    JSON line per case. Any exception but UserInputError ends it with a traceback."""
    from paddleseg_ext.config import load_config
    from paddleseg_ext.engine import checkpoint
    from paddleseg_ext.errors import UserInputError
    from paddleseg_ext.pretrained import load_weights

    with open(manifest) as f:
        cases = json.load(f)
    for case in cases:
        started = time.monotonic()
        try:
            if case['kind'] == 'pdparams':
                load_weights(small_layer(), case['path'])
            elif case['kind'] == 'yaml':
                load_config(case['path'], required=('model',))
            else:
                checkpoint.check_contents(case['path'], checkpoint.read_checkpoint(case['path']))
            outcome = 'loaded'
        except UserInputError as exc:
            outcome = f'error: {exc}'
        seconds = time.monotonic() - started
        print(json.dumps({'id': case['id'], 'outcome': outcome, 'seconds': seconds}), flush=True)


def test_fuzzed_weights_and_configs_through_the_reader(tmp_path):
    cases = fuzz_cases(tmp_path)
    assert len(cases) >= 200
    manifest = tmp_path / 'cases.json'
    manifest.write_text(json.dumps(cases))
    script = (
        'import sys; sys.path.insert(0, sys.argv[1]); '
        'from test_fuzz import read_cases; read_cases(sys.argv[2])'
    )
    result = subprocess.run(
        [sys.executable, '-c', script, os.path.dirname(__file__), str(manifest)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_address_space,
    )
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
    last = outcomes[-1]['id'] if outcomes else 'none'
    assert result.returncode == 0, (
        f'after case {last}: exit {result.returncode} {result.stderr[-3000:]}'
    )
    assert [o['id'] for o in outcomes] == [c['id'] for c in cases]
    for outcome in outcomes:
        assert outcome['seconds'] < 10, outcome
        assert outcome['outcome'] == 'loaded' or '\n' not in outcome['outcome'], outcome
    # The mutations reach both sides: some files still load, most are refused.
    kinds = {o['outcome'].split(':')[0] for o in outcomes}
    assert kinds == {'loaded', 'error'}


CLI_CASES = [
    f'{kind}-cli-{i}' for kind in ('pdparams', 'pdopt', 'pdstates', 'yaml') for i in range(2)
]


@pytest.mark.parametrize('case_id', CLI_CASES)
def test_fuzzed_files_through_the_clis(case_id, tmp_path, synthetic_root, teacher_weights):
    kind = case_id.split('-')[0]
    rng = random.Random(f'{FUZZ_SEED}-{case_id}')
    data = data_opts(synthetic_root)
    save_dir = tmp_path / 'out'
    if kind == 'yaml':
        config = write_config(tmp_path / 'base.yml', TINY)
        config_path = tmp_path / 'config.yml'
        config_path.write_text(mutate_text(rng, open(config).read()), 'utf-8', 'surrogateescape')
        args = [
            'train.py',
            '--config',
            str(config_path),
            '--iters',
            '1',
            '--save_dir',
            str(save_dir),
            *data,
        ]
    else:
        folder = save_dir / 'iter_2'
        shutil.copytree(os.path.dirname(teacher_weights), folder)
        target = folder / WEIGHT_KINDS[kind]
        target.write_bytes(mutate_bytes(rng, target.read_bytes()))
        if kind == 'pdparams':
            args = ['val.py', '--config', TINY_TEACHER, '--model_path', str(target), *data]
        else:
            args = [
                'train.py',
                '--config',
                TINY_TEACHER,
                '--resume_model',
                str(folder),
                '--iters',
                '3',
                '--save_interval',
                '3',
                '--save_dir',
                str(save_dir),
                *data,
            ]
    result = run_cli(*args, timeout=120, limit_memory=True)
    if result.returncode != 0:
        error_line(result)
