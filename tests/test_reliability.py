"""Checkpoints survive crashes and signals; a diverging run stops with a clear error."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from conftest import REPO_ROOT, TEST_CONFIGS, data_opts, run_cli

from paddleseg_ext import weights
from paddleseg_ext.engine import checkpoint
from paddleseg_ext.errors import UserInputError

TINY = os.path.join(TEST_CONFIGS, 'tiny_student.yml')


def test_save_atomic_keeps_previous_checkpoint_when_a_save_fails(tmp_path, monkeypatch):
    final = str(tmp_path / 'iter_2')
    checkpoint.save_atomic(
        final, {'model.pdparams': {'w': paddle.ones([2])}, 'train_state.pdstates': {'iter': 2}}
    )
    real_save = paddle.save
    calls = []

    def no_space_on_second_file(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, 'save', no_space_on_second_file)
    with pytest.raises(UserInputError) as failed:
        checkpoint.save_atomic(
            str(tmp_path / 'iter_4'),
            {'model.pdparams': {'w': paddle.zeros([2])}, 'model.pdopt': {}},
        )
    monkeypatch.setattr(paddle, 'save', real_save)
    message = str(failed.value)
    assert '\n' not in message
    assert 'No space left on device' in message and f'{final} is intact' in message
    kept = weights.load(os.path.join(final, 'model.pdparams'))
    np.testing.assert_array_equal(kept['w'].numpy(), np.ones(2))
    assert sorted(os.listdir(tmp_path)) == ['iter_2']


def test_incomplete_checkpoint_is_not_resumed(tmp_path):
    complete = tmp_path / 'iter_2'
    checkpoint.save_atomic(
        str(complete), {name: {'iter': 2} for name in checkpoint.CHECKPOINT_FILES}
    )
    (tmp_path / 'iter_4').mkdir()  # e.g. a folder left by hand, no train_state
    (tmp_path / 'iter_6.tmp').mkdir()  # a save that crashed
    folder, saved = checkpoint.resume_checkpoint('auto', str(tmp_path))
    assert folder == str(complete) and saved['train_state.pdstates'] == {'iter': 2}


def test_sigterm_saves_and_resume_auto_completes(tmp_path, synthetic_root):
    save_dir = str(tmp_path / 'run')
    args = [
        sys.executable,
        'train.py',
        '--config',
        TINY,
        '--iters',
        '400',
        '--save_interval',
        '2',
        '--log_iters',
        '1',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    ]
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 120
    while not os.path.isdir(os.path.join(save_dir, 'iter_2')) and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.isdir(os.path.join(save_dir, 'iter_2')), 'no first checkpoint in 120 s'
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert 'Stopped by SIGTERM' in output and '--resume_model auto' in output
    stopped_at = checkpoint.checkpoint_dirs(save_dir)[-1]
    stopped_iter = int(os.path.basename(stopped_at).split('_')[1])
    assert 2 <= stopped_iter < 400

    resumed = run_cli(
        'train.py',
        '--config',
        TINY,
        '--iters',
        str(stopped_iter + 2),
        '--save_interval',
        '2',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        '--resume_model',
        'auto',
        *data_opts(synthetic_root),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f'Resumed from {stopped_at} at iter {stopped_iter}' in resumed.stdout + resumed.stderr
    assert os.path.isfile(os.path.join(save_dir, f'iter_{stopped_iter + 2}', 'model.pdparams'))


def test_non_finite_loss_stops_with_iteration_and_term(tmp_path, synthetic_root):
    save_dir = tmp_path / 'run'
    result = run_cli(
        'train.py',
        '--config',
        TINY,
        '--iters',
        '8',
        '--learning_rate',
        '1e30',
        '--save_interval',
        '1',
        '--seed',
        '0',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
    )
    # An exit code of its own (errors.DIVERGED_EXIT_CODE), so tools tell divergence from a
    # broken run.
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('error: iter ') and 'loss term CrossEntropyLoss is' in error
    assert "lower the learning rate or that term's coef" in error
    failed_iter = int(error.split('iter ')[1].split(':')[0])
    # The checkpoints saved before the failure are still there, the newest loadable.
    kept = checkpoint.checkpoint_dirs(str(save_dir))
    assert kept and kept[-1] == str(save_dir / f'iter_{failed_iter - 1}')
    assert weights.load(os.path.join(kept[-1], 'model.pdparams'))


def test_best_model_is_the_best_evaluated_checkpoint(tmp_path, synthetic_root):
    save_dir = tmp_path / 'run'
    result = run_cli(
        'train.py',
        '--config',
        TINY,
        '--iters',
        '6',
        '--save_interval',
        '1',
        '--do_eval',
        '--keep_checkpoint_max',
        '10',
        '--seed',
        '0',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr
    with open(save_dir / 'train_log.jsonl') as f:
        evals = [r for r in map(json.loads, f) if r['tag'] == 'Evaluate']
    assert [r['iter'] for r in evals] == list(range(1, 7))
    best = max(evals, key=lambda r: r['mIoU'])  # the first of equals, as "better" is strict
    best_weights = weights.load(str(save_dir / 'best_model' / 'model.pdparams'))
    at_best = weights.load(str(save_dir / f'iter_{best["iter"]}' / 'model.pdparams'))
    for key, value in at_best.items():
        np.testing.assert_array_equal(best_weights[key].numpy(), value.numpy())
