"""Resuming a run gives the weights of the uninterrupted run."""

import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import TEST_CONFIGS, data_opts, run_cli

from paddleseg_ext import weights

TINY_STUDENT = os.path.join(TEST_CONFIGS, 'tiny_student.yml')
TINY_TEACHER = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
TINY_STUDENT_CWD = os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml')
TINY_STUDENT_AUTO = os.path.join(TEST_CONFIGS, 'tiny_student_auto.yml')


def learned_loss_setup(tmp_path):
    """A plugin folder for PYTHONPATH that registers tests/learned_scale_loss.py's loss at
    start-up, and a student config whose one term is that loss."""
    plugin = tmp_path / 'plugin'
    plugin.mkdir()
    (plugin / 'sitecustomize.py').write_text('import learned_scale_loss  # noqa: F401\n')
    config = tmp_path / 'student_learned_loss.yml'
    config.write_text(
        f"_base_: '{TINY_STUDENT}'\ndistill_loss:\n  types: [{{type: LearnedScaleL2}}]\n"
        '  coef: [1]\n'
    )
    tests = os.path.dirname(os.path.abspath(__file__))
    return {**os.environ, 'PYTHONPATH': os.pathsep.join([str(plugin), tests])}, str(config)


def command(kind, teacher_weights, student_config=None):
    """train.py, or distill_train.py with KL + channel-wise features through an aligner
    (distill_auto: their coefficients measured at the start; distill_learned_loss: the
    config given, whose loss has a parameter)."""
    if kind == 'train':
        return ['train.py', '--config', TINY_STUDENT]
    return [
        'distill_train.py',
        '--allow_weak_teacher',
        '--teather_config',
        TINY_TEACHER,
        '--teacher_model_path',
        teacher_weights,
        '--student_config',
        student_config or {'distill_auto': TINY_STUDENT_AUTO, 'distill': TINY_STUDENT_CWD}[kind],
    ]


def train(
    save_dir,
    iters,
    root,
    *extra,
    opts=(),
    kind='train',
    teacher_weights=None,
    student_config=None,
    env=None,
):
    return run_cli(
        *command(kind, teacher_weights, student_config),
        '--iters',
        str(iters),
        '--save_interval',
        '3',
        '--num_workers',
        '0',
        '--seed',
        '3',
        '--save_dir',
        save_dir,
        *extra,
        *data_opts(root),
        *opts,
        env=env,
    )


def load_numpy(path):
    return {
        key: np.asarray(value.numpy() if hasattr(value, 'numpy') else value)
        for key, value in weights.load(path).items()
    }


@pytest.mark.parametrize('kind', ['train', 'distill', 'distill_auto', 'distill_learned_loss'])
def test_resume_auto_matches_uninterrupted_run(synthetic_root, tmp_path, kind, request):
    whole_dir = str(tmp_path / 'whole')
    split_dir = str(tmp_path / 'split')
    teacher = request.getfixturevalue('teacher_weights') if kind != 'train' else None
    env, student_config = (
        learned_loss_setup(tmp_path) if kind == 'distill_learned_loss' else (None, None)
    )
    run = functools.partial(
        train, kind=kind, teacher_weights=teacher, student_config=student_config, env=env
    )
    # The first half stops at iter 3 of a 6-iteration schedule: PolynomialDecay's
    # decay_steps defaults to --iters, so it is pinned to 6 as in the uninterrupted run.
    with ThreadPoolExecutor(max_workers=2) as pool:
        whole = pool.submit(run, whole_dir, 6, synthetic_root)
        first = pool.submit(run, split_dir, 3, synthetic_root, opts=('lr_scheduler.decay_steps=6',))
        whole, first = whole.result(), first.result()
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(n for n in os.listdir(split_dir) if n.startswith('iter_')) == ['iter_3']

    second = run(split_dir, 6, synthetic_root, '--resume_model', 'auto')
    assert second.returncode == 0, second.stderr[-3000:]
    resumed_from = os.path.join(split_dir, 'iter_3')
    assert re.search(rf'Resumed from {re.escape(resumed_from)} at iter 3\b', second.stdout), (
        second.stdout[-3000:]
    )
    assert 'Training 6 iterations from iter 3' in second.stdout

    expected = load_numpy(os.path.join(whole_dir, 'iter_6', 'model.pdparams'))
    actual = load_numpy(os.path.join(split_dir, 'iter_6', 'model.pdparams'))
    assert sorted(actual) == sorted(expected)
    different = {
        key: float(np.abs(actual[key] - expected[key]).max())
        for key in expected
        if actual[key].shape != expected[key].shape
        or not np.allclose(actual[key], expected[key], rtol=0, atol=1e-5)
    }
    assert not different, (
        f'{len(different)} of {len(expected)} tensors differ: {dict(list(different.items())[:5])}'
    )
    # The run really trained: iter 3 and iter 6 weights are not the same.
    at_3 = load_numpy(os.path.join(split_dir, 'iter_3', 'model.pdparams'))
    assert any(not np.allclose(at_3[key], actual[key]) for key in actual)
    if kind == 'distill_auto':
        # Measured once, at iter 1; the resumed run keeps the checkpoint's values.
        assert whole.stdout.count('coef auto:') == 2 and first.stdout.count('coef auto:') == 2
        assert 'coef auto:' not in second.stdout
        coefs = [
            weights.load(os.path.join(folder, 'iter_6', 'train_state.pdstates'))['auxiliary'][
                'coefs'
            ]
            for folder in (whole_dir, split_dir)
        ]
        np.testing.assert_array_equal(np.asarray(coefs[0]), np.asarray(coefs[1]))
        assert np.all(np.asarray(coefs[0]) > 0)
    if kind == 'distill_learned_loss':
        # The loss's parameter trained, was kept in the train state and came back on resume.
        scales = [
            weights.load(os.path.join(folder, 'iter_6', 'train_state.pdstates'))['auxiliary'][
                'losses.0.scale'
            ]
            for folder in (whole_dir, split_dir)
        ]
        np.testing.assert_allclose(np.asarray(scales[0]), np.asarray(scales[1]), atol=1e-6)
        assert np.asarray(scales[0]).item() != 1.0
