"""paddleseg_ext.weights: weights and checkpoints load as paddle.load loads them, and a
file asking to run code is refused, through every CLI that reads one."""

import os
import pickle
import shutil

import hostile
import numpy as np
import paddle
import pytest
import yaml
from conftest import TEST_CONFIGS, data_opts, error_line, run_cli
from paddle.base import core
from paddle.framework.io import _legacy_save

from paddleseg_ext import weights

TINY_STUDENT = os.path.join(TEST_CONFIGS, 'tiny_student.yml')
TINY_TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')


class _RunsCommand:
    """Pickles as a call of os.system(command), as a malicious weights file would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def plant(path, marker):
    """A weights file whose unpickling would create `marker`."""
    with open(path, 'wb') as f:
        pickle.dump({'conv.weight': _RunsCommand(f'touch {marker}')}, f, protocol=2)
    return str(path)


def assert_same(expected, got, where='root'):
    assert type(got) is type(expected), where
    if isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            assert_same(expected[key], got[key], f'{where}/{key}')
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(expected, got)):
            assert_same(a, b, f'{where}/{i}')
    elif isinstance(expected, paddle.Tensor):
        if not expected.name.startswith('generated_tensor'):  # a fresh name per load
            assert got.name == expected.name, where
        assert got.dtype == expected.dtype, where
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=where)
    else:
        assert got == expected, where


def small_layer():
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))


def trained_objects():
    """A small_layer's, its optimizer's and a train state's dicts after one step."""
    layer = small_layer()
    optimizer = paddle.optimizer.Momentum(
        learning_rate=paddle.optimizer.lr.PolynomialDecay(0.01, 10),
        momentum=0.9,
        parameters=layer.parameters(),
    )
    layer(paddle.ones([1, 3, 5, 5])).mean().backward()
    optimizer.step()
    state = {
        'iter': 3,
        'iters': 10,
        'seed': 7,
        'best_miou': np.float64(0.25),
        'best_iter': 2,
        'auxiliary': layer.state_dict(),
        'scaler': {'scale': 1024.0, 'good': 0},
    }
    return {
        'model.pdparams': layer.state_dict(),
        'model.pdopt': optimizer.state_dict(),
        'train_state.pdstates': state,
    }


@pytest.mark.parametrize('protocol', [2, 3, 4])
@pytest.mark.parametrize('name', ['model.pdparams', 'model.pdopt', 'train_state.pdstates'])
def test_loads_what_paddle_save_wrote_as_paddle_load_does(tmp_path, name, protocol):
    path = str(tmp_path / name)
    paddle.save(trained_objects()[name], path, protocol=protocol)
    assert_same(paddle.load(path), weights.load(path))


def test_loads_paddle_2_0_state_dicts_and_lod_tensors(tmp_path):
    """Published paddleseg weights were written by paddle 2.0's save (a name table, arrays
    at protocol 2); a LoDTensor reduces to eval('data', {'data': array})."""
    legacy = str(tmp_path / 'legacy.pdparams')
    _legacy_save(trained_objects()['model.pdparams'], legacy, protocol=2)
    assert_same(paddle.load(legacy), weights.load(legacy))
    lod = core.LoDTensor()
    lod.set(np.arange(6, dtype='float32').reshape(2, 3), paddle.CPUPlace())
    path = str(tmp_path / 'lod.pdstates')
    paddle.save({'value': lod, 'iter': 1}, path)
    assert_same(paddle.load(path), weights.load(path))


def test_numpy_2_module_names_load(tmp_path):
    """numpy 2 writes its array rebuilder as numpy._core.multiarray (paddle 3 stacks)."""
    path = str(tmp_path / 'np2.pdparams')
    paddle.save(trained_objects()['model.pdparams'], path, protocol=2)
    expected = paddle.load(path)
    with open(path, 'rb') as f:
        data = f.read()
    assert b'numpy.core.multiarray' in data
    with open(path, 'wb') as f:
        f.write(data.replace(b'numpy.core.multiarray', b'numpy._core.multiarray'))
    assert_same(expected, weights.load(path))


@pytest.mark.parametrize(
    'payload',
    [
        _RunsCommand('touch {marker}'),
        # The two callables paddle's format needs, called with anything else than paddle writes.
        type('EvalCall', (), {'__reduce__': lambda self: (eval, ('__import__("os")', {}))})(),
        type(
            'Codec', (), {'__reduce__': lambda self: (__import__('_codecs').encode, ('x', 'rot13'))}
        )(),
    ],
    ids=['os.system', 'eval', 'codec'],
)
@pytest.mark.parametrize('protocol', [0, 2, 4])
def test_refuses_anything_else(tmp_path, payload, protocol):
    marker = tmp_path / 'marker'
    if isinstance(payload, _RunsCommand):
        payload = _RunsCommand(payload.command.format(marker=marker))
    path = tmp_path / 'bad.pdparams'
    path.write_bytes(pickle.dumps({'w': payload}, protocol=protocol))
    with pytest.raises(weights.UserInputError) as raised:
        weights.load(str(path))
    assert str(path) in str(raised.value)
    assert not marker.exists()


def test_damaged_files_are_one_clear_error(tmp_path):
    path = tmp_path / 'model.pdparams'
    paddle.save(trained_objects()['model.pdparams'], str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(weights.DamagedWeights, match='model.pdparams: cannot be read'):
        weights.load(str(path))
    path.write_bytes(b'not a pickle at all')
    with pytest.raises(weights.DamagedWeights):
        weights.load(str(path))


def test_paddleseg_pretrained_loading_goes_through_the_safe_reader(tmp_path):
    """paddleseg's models call utils.load_entire_model(self, pretrained) in init_weight."""
    from paddleseg.utils import load_entire_model

    layer = paddle.nn.Linear(2, 3)
    path = str(tmp_path / 'pretrained.pdparams')
    _legacy_save({'weight': paddle.ones([2, 3]), 'bias': paddle.ones([3])}, path, protocol=2)
    load_entire_model(layer, path)
    np.testing.assert_array_equal(layer.weight.numpy(), np.ones([2, 3], 'float32'))
    marker = tmp_path / 'marker'
    with pytest.raises(weights.RefusedWeights):
        load_entire_model(layer, plant(tmp_path / 'evil.pdparams', marker))
    assert not marker.exists()


def write_config(path, base, **model):
    """A copy of config `base` (its _base_ made absolute) with model entries replaced."""
    with open(base) as f:
        dic = yaml.safe_load(f)
    if '_base_' in dic:
        dic['_base_'] = os.path.join(os.path.dirname(base), dic['_base_'])
    dic['model'].update(model)
    with open(path, 'w') as f:
        yaml.safe_dump(dic, f)
    return str(path)


def planted_checkpoint(tmp_path, teacher_weights, name, payload, marker):
    """A copy of a real iter_N checkpoint with its `name` file replaced by a planted one."""
    folder = tmp_path / 'ckpt' / 'iter_2'
    shutil.copytree(os.path.dirname(teacher_weights), folder)
    (folder / name).unlink()
    hostile.WEIGHTS[payload][0](str(folder / name), marker)
    return str(folder), str(folder / name)


CASES = [
    'val',
    'distill_teacher_model_path',
    'teacher_config_pretrained',
    'student_config_pretrained',
    'backbone_pretrained',
    'resume_pdparams',
    'resume_pdopt',
    'resume_pdstates',
    'resume_auto',
    'export',
    'predict',
]


@pytest.mark.parametrize('payload', ['os_system', 'object_dtype'])
@pytest.mark.parametrize('case', CASES)
def test_planted_file_is_refused_by_every_cli(
    case, payload, tmp_path, synthetic_root, teacher_weights
):
    """os.system: code run; object_dtype: only allowed names, a segfault in paddle.load."""
    marker = tmp_path / 'marker'
    evil = str(tmp_path / 'evil.pdparams')
    hostile.WEIGHTS[payload][0](evil, marker)
    data = data_opts(synthetic_root)
    save_dir = tmp_path / 'out'
    train_flags = ['--iters', '3', '--save_interval', '3', '--save_dir', str(save_dir)]
    if case == 'val':
        args = ['val.py', '--config', TINY_STUDENT, '--model_path', evil, *data]
    elif case == 'distill_teacher_model_path':
        args = [
            'distill_train.py',
            '--allow_weak_teacher',
            '--teacher_config',
            TINY_TEACHER,
            '--student_config',
            TINY_STUDENT,
            '--teacher_model_path',
            evil,
            *train_flags,
            *data,
        ]
    elif case == 'teacher_config_pretrained':
        teacher_cfg = write_config(tmp_path / 'teacher.yml', TINY_TEACHER, pretrained=evil)
        args = [
            'distill_train.py',
            '--allow_weak_teacher',
            '--teacher_config',
            teacher_cfg,
            '--student_config',
            TINY_STUDENT,
            *train_flags,
            *data,
        ]
    elif case in ('student_config_pretrained', 'backbone_pretrained'):
        if case == 'student_config_pretrained':
            student_cfg = write_config(tmp_path / 'student.yml', TINY_STUDENT, pretrained=evil)
        else:
            backbone = {'type': 'ResNet18_vd', 'output_stride': 16, 'pretrained': evil}
            student_cfg = write_config(tmp_path / 'student.yml', TINY_STUDENT, backbone=backbone)
        args = ['train.py', '--config', student_cfg, *train_flags, *data]
    elif case.startswith('resume_'):
        name = {
            'resume_pdparams': 'model.pdparams',
            'resume_pdopt': 'model.pdopt',
            'resume_pdstates': 'train_state.pdstates',
            'resume_auto': 'model.pdparams',
        }[case]
        folder, evil = planted_checkpoint(tmp_path, teacher_weights, name, payload, marker)
        if case == 'resume_auto':  # a planted file stops the run; it is not skipped as damaged
            save_dir = os.path.dirname(folder)
            train_flags = ['--iters', '3', '--save_interval', '3', '--save_dir', save_dir]
            resume = 'auto'
        else:
            resume = folder
        args = ['train.py', '--config', TINY_TEACHER, '--resume_model', resume, *train_flags, *data]
    elif case == 'export':
        args = [
            'tools/export.py',
            '--config',
            TINY_STUDENT,
            '--model_path',
            evil,
            '--save_dir',
            str(tmp_path / 'export'),
            *data,
        ]
    else:
        image = os.path.join(synthetic_root, 'JPEGImages')
        args = [
            'tools/predict.py',
            '--config',
            TINY_STUDENT,
            '--model_path',
            evil,
            '--image_path',
            image,
            '--save_dir',
            str(tmp_path / 'pred'),
            *data,
        ]
    result = run_cli(*args, timeout=120, limit_memory=True)
    error_line(result, f'{evil}: {hostile.WEIGHTS[payload][1]}')
    assert not marker.exists()
    assert not os.path.exists(os.path.join(save_dir, 'iter_3'))


def test_yaml_configs_cannot_run_code(tmp_path):
    marker = tmp_path / 'marker'
    config = tmp_path / 'evil.yml'
    config.write_text(
        f'_base_: {os.path.join(TEST_CONFIGS, "tiny_base.yml")}\n'
        f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    result = run_cli('train.py', '--config', str(config), '--iters', '1', timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'Traceback' not in result.stdout + result.stderr
    assert f'{config}: invalid YAML' in result.stderr
    assert not marker.exists()
