import os
import resource
import subprocess
import sys

import pytest

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.datasets.synthetic import make_synthetic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIGS = os.path.join(REPO_ROOT, 'tests', 'configs')


# What a CLI may take in tests of hostile input: `ulimit -v 3000000` (KiB).
MEMORY_LIMIT = 3_000_000 * 1024


def limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(*args, timeout=300, env=None, limit_memory=False):
    """Runs a repo script (e.g. 'train.py', '--config', ...) as a subprocess from the repo
    root; `limit_memory`: under MEMORY_LIMIT of address space."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=limit_address_space if limit_memory else None,
    )


def error_line(result, *fragments):
    """The single `error: ...` line of a failed run (exit 1, not a crash or a hang, no
    traceback, the last line of stderr), holding every fragment; returns it."""
    if isinstance(result, subprocess.TimeoutExpired):
        stderr = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
        pytest.fail(
            f'{result.cmd[1:]} hung: killed after {result.timeout} s '
            f'(expected exit code 1); stderr tail:\n{(stderr or "")[-800:]}'
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, f'exit {result.returncode}: {output[-3000:]}'
    assert 'Traceback' not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, result.stderr[-3000:]
    assert result.stderr.rstrip('\n').splitlines()[-1] == lines[0], result.stderr[-3000:]
    for fragment in fragments:
        assert str(fragment) in lines[0], f'{fragment!r} not in {lines[0]!r}'
    return lines[0]


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
