"""The product's own CLIs as subprocesses, exactly as a user would type them.

Each run's output goes to a log file, and a progress line reaches the console at least
every PROGRESS_SECONDS.
"""

import json
import os
import subprocess
import sys
import threading
import time

from paddleseg_ext.datasets.layout import list_file
from paddleseg_ext.errors import DIVERGED_EXIT_CODE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRESS_SECONDS = 30


def say(message):
    """One line to stdout in a single write, so runs side by side never split each
    other's lines."""
    sys.stdout.write(message + '\n')
    sys.stdout.flush()


def run_logged(args, log_path, label, append=False):
    """Runs `python args...` from the repo root, output to log_path; progress on stdout.

    Prints the newest [TRAIN]/[EVAL] line at most every PROGRESS_SECONDS, and a heartbeat
    when the run is quiet for that long. Raises RuntimeError naming the log on failure.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.time()
    latest = {'line': '', 'shown': ''}
    with open(log_path, 'a' if append else 'w') as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

        def pump():
            for line in proc.stdout:
                log.write(line)
                if '[TRAIN]' in line or '[EVAL] #Images' in line:
                    latest['line'] = line.split('[INFO]')[-1].strip()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(PROGRESS_SECONDS)
            if reader.is_alive():
                line = latest['line'] if latest['line'] != latest['shown'] else 'running'
                latest['shown'] = latest['line']
                say(f'  [{label} {time.time() - start:5.0f}s] {line[:150]}')
        proc.wait()
    check_exit(proc.returncode, log_path, label)
    return time.time() - start


class RunDiverged(RuntimeError):
    """A training run stopped because a loss became NaN or Inf (its exit code says so)."""


def check_exit(returncode, log_path, label):
    """RuntimeError (RunDiverged for a NaN/Inf loss) naming the run, its last log line and
    the log, unless it exited 0."""
    if returncode != 0:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-1:] or ['']
        kind = RunDiverged if returncode == DIVERGED_EXIT_CODE else RuntimeError
        raise kind(f'{label} failed (exit {returncode}): {tail[0]} -- full log: {log_path}')


def data_opts(train_root, val_root, task='segmentation'):
    """--opts pointing a config's datasets at other roots; a classification config's list
    files too (those prepare_data.py writes), which it names apart from its root."""
    opts = [
        '--opts',
        f'train_dataset.dataset_root={train_root}',
        f'val_dataset.dataset_root={val_root}',
    ]
    if task == 'classification':
        # Here, not at the top: importing paddleseg_ext loads paddle, which the callers
        # that only launch CLIs (tools/benchmark_speed.py's parent) do not.

        opts += [
            f'train_dataset.train_path={list_file(train_root, "train")}',
            f'val_dataset.val_path={list_file(val_root, "val")}',
        ]
    return opts


def train(
    run_dir,
    config,
    iters,
    seed,
    opts,
    label,
    teacher=None,
    evaluations=6,
    cpu_threads=None,
    resume=False,
    teacher_cache=None,
    allow_weak_teacher=False,
):
    """train.py (teacher=None) or distill_train.py (teacher=(config, weights)); seconds.
    resume: continue from run_dir's newest checkpoint (`--resume_model auto`).
    teacher_cache, allow_weak_teacher: distill_train.py's flags.

    Evaluates `evaluations` times per run (for the curves); best_model is the best of
    those."""
    extra = ['--cpu_threads', str(cpu_threads)] if cpu_threads else []
    extra += ['--resume_model', 'auto'] if resume else []
    common = [
        '--iters',
        str(iters),
        '--seed',
        str(seed),
        '--do_eval',
        '--save_interval',
        str(max(iters // evaluations, 1)),
        '--log_iters',
        '10',
        '--keep_checkpoint_max',
        '1',
        *extra,
        '--save_dir',
        run_dir,
        *opts,
    ]
    if teacher is None:
        args = ['train.py', '--config', config, *common]
    else:
        args = [
            'distill_train.py',
            '--teather_config',
            teacher[0],
            '--teacher_model_path',
            teacher[1],
            '--student_config',
            config,
            *common,
        ]
        args += ['--teacher_cache', teacher_cache] if teacher_cache else []
        args += ['--allow_weak_teacher'] if allow_weak_teacher else []
    return run_logged(args, os.path.join(run_dir, 'run.log'), label, append=resume)


def val_score(config, weights, out_json, data_root, task):
    """val.py --json on the weights, as a user reads them; the task's primary metric."""
    run_logged(
        [
            'val.py',
            '--config',
            config,
            '--model_path',
            weights,
            '--json',
            out_json,
            *data_opts(data_root, data_root, task.name),
        ],
        out_json + '.log',
        'val',
    )
    with open(out_json) as f:
        return json.load(f)[task.primary]


def best_score(run_dir, config, data_root, task, with_val_py=True):
    """The primary metric of run_dir/best_model: by val.py, or as its run evaluated it."""
    if not with_val_py:
        return max(score for _, score in val_curve(run_dir, task))
    best = os.path.join(run_dir, 'best_model')
    return val_score(
        config,
        os.path.join(best, 'model.pdparams'),
        os.path.join(best, 'metrics.json'),
        data_root,
        task,
    )


def val_curve(run_dir, task):
    """[(iter, primary metric)] of the evaluations during training (train_log.jsonl)."""
    return evaluations(run_dir, task.primary_logged)


def records(run_dir, tag):
    """The records with this tag that run_dir/train_log.jsonl holds so far (none yet: [];
    a line still being written is skipped)."""
    path = os.path.join(run_dir, 'train_log.jsonl')
    if not os.path.isfile(path):
        return []
    found = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get('tag') == tag:
                found.append(record)
    return found


def evaluations(run_dir, metric):
    """[(iter, metric)] of the 'Evaluate' records run_dir/train_log.jsonl holds so far."""
    return [(record['iter'], record[metric]) for record in records(run_dir, 'Evaluate')]


def run_watched(args, run_dir, metric, on_evaluation=None, poll_seconds=2.0):
    """Runs `python args...` (a training CLI writing run_dir/train_log.jsonl), calling
    on_evaluation(iter, score) for each evaluation as it is written; one returning True
    stops the run. Returns (the evaluations [(iter, score)], stopped early, seconds)."""
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    seen = 0
    log_path = os.path.join(run_dir, 'run.log')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while True:
                finished = proc.poll() is not None
                found = evaluations(run_dir, metric)
                for iteration, score in found[seen:]:
                    seen += 1
                    if on_evaluation is not None and on_evaluation(iteration, score):
                        proc.terminate()
                        proc.wait()
                        return found, True, time.time() - start
                if finished:
                    break
                time.sleep(poll_seconds)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    check_exit(proc.returncode, log_path, os.path.basename(run_dir))
    return evaluations(run_dir, metric), False, time.time() - start
