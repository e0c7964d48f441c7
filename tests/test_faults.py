"""Faults in the middle of a run lose nothing: a full disk while saving, a damaged newest
checkpoint, a worker of a two-process run killed. End to end through the CLIs."""

import os
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT, TEST_CONFIGS, data_opts, run_cli

from paddleseg_ext import weights
from paddleseg_ext.engine import checkpoint

TINY = os.path.join(TEST_CONFIGS, 'tiny_student.yml')

# Loaded by Python at start-up from PYTHONPATH: paddle.save then fails like a full disk
# (a partial file, then ENOSPC) for the paths containing $FAULT_SAVE_PATH.
NO_SPACE_HOOK = """
import os
if os.environ.get('FAULT_SAVE_PATH'):
    import errno
    import paddle
    real_save = paddle.save

    def save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        if os.environ['FAULT_SAVE_PATH'] in str(path):
            os.truncate(path, os.path.getsize(path) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    paddle.save = save
"""


def train(save_dir, root, *extra, env=None, timeout=240):
    return run_cli(
        'train.py',
        '--config',
        TINY,
        '--save_interval',
        '2',
        '--seed',
        '0',
        '--save_dir',
        str(save_dir),
        *extra,
        *data_opts(root),
        env=env,
        timeout=timeout,
    )


def assert_loads(folder):
    assert weights.load(os.path.join(folder, 'train_state.pdstates'))['iter'] == int(
        os.path.basename(folder).split('_')[1]
    )
    checkpoint.read_checkpoint(folder)


def test_no_space_while_saving(tmp_path, synthetic_root):
    hook_dir = tmp_path / 'hook'
    hook_dir.mkdir()
    (hook_dir / 'sitecustomize.py').write_text(NO_SPACE_HOOK)
    env = dict(os.environ, PYTHONPATH=str(hook_dir), FAULT_SAVE_PATH='iter_4.tmp/model.pdopt')
    save_dir = tmp_path / 'run'
    result = train(save_dir, synthetic_root, '--iters', '4', env=env)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    assert errors[0].startswith(f'error: saving {save_dir / "iter_4"} failed (No space left')
    assert f'{save_dir / "iter_2"} is intact' in errors[0]
    assert sorted(os.listdir(save_dir)) == ['config.yml', 'iter_2', 'train_log.jsonl']
    assert_loads(str(save_dir / 'iter_2'))


def test_damaged_newest_checkpoint_resumes_from_the_previous(tmp_path, synthetic_root):
    save_dir = tmp_path / 'run'
    first = train(save_dir, synthetic_root, '--iters', '4')
    assert first.returncode == 0, first.stderr[-2000:]
    damaged = save_dir / 'iter_4' / 'model.pdopt'
    damaged.write_bytes(damaged.read_bytes()[: len(damaged.read_bytes()) // 2])
    resumed = train(save_dir, synthetic_root, '--iters', '4', '--resume_model', 'auto')
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert f'skipping checkpoint {save_dir / "iter_4"}: {damaged}: cannot be read' in output, (
        output[-3000:]
    )
    assert f'Resumed from {save_dir / "iter_2"} at iter 2' in output
    assert_loads(str(save_dir / 'iter_4'))  # written again by the resumed run


def worker_pids(launcher_pid):
    """{rank: pid} of the launcher's worker processes."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                parent = int(f.read().rsplit(')', 1)[1].split()[1])
            if parent != launcher_pid:
                continue
            with open(f'/proc/{entry}/environ', 'rb') as f:
                environ = dict(
                    item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item
                )
        except (OSError, ValueError):
            continue
        if b'PADDLE_TRAINER_ID' in environ:
            found[int(environ[b'PADDLE_TRAINER_ID'])] = int(entry)
    return found


def test_killed_worker_ends_the_launch_and_resume_auto_completes(tmp_path, synthetic_root):
    save_dir = tmp_path / 'run'
    env = {
        key: value
        for key, value in os.environ.items()  # see test_distributed_cli.py
        if key not in ('CUDA_VISIBLE_DEVICES', 'XPU_VISIBLE_DEVICES', 'PADDLE_XCCL_BACKEND')
    }
    launch = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'paddle.distributed.launch',
            '--nproc_per_node',
            '2',
            '--log_dir',
            str(tmp_path / 'launch_logs'),
            'train.py',
            '--config',
            TINY,
            '--iters',
            '400',
            '--save_interval',
            '2',
            '--seed',
            '0',
            '--device',
            'cpu',
            '--save_dir',
            str(save_dir),
            *data_opts(synthetic_root),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while not checkpoint.checkpoint_dirs(str(save_dir)) and time.time() < deadline:
            time.sleep(0.2)
        assert checkpoint.checkpoint_dirs(str(save_dir)), 'no first checkpoint in 180 s'
        workers = worker_pids(launch.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.time()
        output, _ = launch.communicate(timeout=60)
        assert time.time() - killed_at < 60
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.communicate()
    assert launch.returncode != 0, output[-3000:]
    survivor = f'/proc/{workers[0]}'  # rank 0 must not be left running on its own
    deadline = time.time() + 10
    while os.path.exists(survivor) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(survivor)
    newest = checkpoint.checkpoint_dirs(str(save_dir))[-1]
    newest_iter = int(os.path.basename(newest).split('_')[1])
    resumed = train(
        save_dir, synthetic_root, '--iters', str(newest_iter + 2), '--resume_model', 'auto'
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'Resumed from {newest} at iter {newest_iter}' in resumed.stdout + resumed.stderr
    assert_loads(os.path.join(save_dir, f'iter_{newest_iter + 2}'))
