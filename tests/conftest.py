import os
import subprocess
import sys

import pytest

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.datasets.synthetic import make_synthetic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIGS = os.path.join(REPO_ROOT, 'tests', 'configs')


def run_cli(*args, timeout=300, env=None):
    """Runs a repo script (e.g. 'train.py', '--config', ...) as a subprocess from the repo root."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def data_opts(root):
    return ['--opts', f'train_dataset.dataset_root={root}', f'val_dataset.dataset_root={root}']


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A small synthetic optic disc set in PaddleSeg's layout, shared by the session."""
    root = str(tmp_path_factory.mktemp('data') / 'optic_disc_seg')
    make_synthetic(root, n=16, seed=0, min_size=64, max_size=96)
    return root


@pytest.fixture(scope='session')
def teacher_weights(tmp_path_factory, synthetic_root):
    """A tiny teacher (tests/configs/tiny_teacher.yml) trained once with train.py, 2 iters."""
    save_dir = tmp_path_factory.mktemp('teacher')
    result = run_cli(
        'train.py',
        '--config',
        os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--seed',
        '0',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return str(save_dir / 'iter_2' / 'model.pdparams')
