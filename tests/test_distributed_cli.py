"""Two-process data-parallel training on CPU through paddle's launcher.

paddle 2.6's CPU build needs no extra environment for `paddle.distributed.launch`: it
starts the workers with gloo (with_gloo: 1) on 127.0.0.1. But the launcher must NOT see
CUDA_VISIBLE_DEVICES (nor XPU_VISIBLE_DEVICES / PADDLE_XCCL_BACKEND): the mere presence of
the variable, even empty, makes it launch in GPU mode, which on a CPU build starts no
worker at all (only default.gpu.log is written). The test removes them from the environment.
"""

import glob
import json
import os
import re

from conftest import TEST_CONFIGS, data_opts, run_cli


def test_two_process_cpu_training(synthetic_root, tmp_path):
    save_dir = str(tmp_path / 'out')
    log_dir = str(tmp_path / 'launch_logs')
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ('CUDA_VISIBLE_DEVICES', 'XPU_VISIBLE_DEVICES', 'PADDLE_XCCL_BACKEND')
    }
    result = run_cli(
        '-m',
        'paddle.distributed.launch',
        '--nproc_per_node',
        '2',
        '--log_dir',
        log_dir,
        'train.py',
        '--config',
        os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        '--iters',
        '4',
        '--save_interval',
        '4',
        '--seed',
        '0',
        '--device',
        'cpu',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
        timeout=240,
        env=env,
    )
    worker_logs = {}
    for rank in (0, 1):
        path = os.path.join(log_dir, f'workerlog.{rank}')
        assert os.path.isfile(path), os.listdir(log_dir) if os.path.isdir(log_dir) else None
        with open(path, errors='replace') as f:
            worker_logs[rank] = f.read()
    assert result.returncode == 0, (
        result.stdout[-2000:],
        worker_logs[0][-2000:],
        worker_logs[1][-2000:],
    )

    # The checkpoint is written once (by rank 0), complete, and no temporary folder is left.
    assert sorted(os.listdir(save_dir)) == ['config.yml', 'iter_4', 'train_log.jsonl'], os.listdir(
        save_dir
    )
    assert set(os.listdir(os.path.join(save_dir, 'iter_4'))) == {
        'model.pdparams',
        'model.pdopt',
        'train_state.pdstates',
    }
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert [r['iter'] for r in records if r['tag'] == 'Train'] == [4]  # one writer

    # Both ranks ran the training: rank 0 trained in a 2-process group to iter 4, rank 1
    # (whose product log lines are silenced, as in PaddleSeg) ended without an error, and
    # the launcher saw both replicas of the pod complete with exit code 0.
    assert '2 process(es)' in worker_logs[0]
    assert re.search(r'\[TRAIN\] epoch: \d+, iter: 4/4, loss: \d', worker_logs[0])
    assert 'Training finished at iter 4' in worker_logs[0]
    for rank in (0, 1):
        assert 'Traceback' not in worker_logs[rank], worker_logs[rank][-2000:]
        assert 'error:' not in worker_logs[rank], worker_logs[rank][-2000:]
    with open(os.path.join(log_dir, 'envlog.1')) as f:
        assert 'PADDLE_TRAINER_ID=1' in f.read()
    launcher = result.stdout + result.stderr
    assert 'replicas 2' in launcher
    assert 'Pod completed' in launcher
    assert not glob.glob(os.path.join(save_dir, '*.tmp'))
