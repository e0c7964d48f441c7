"""The runs a recipe search (tools/tune.py) trains on its split, through the real CLIs: the
student alone (the yardstick), your own recipe and each trial's recipe, once per seed and
run folder. A whole run is reused, so a search run again on the same --out trains only
what it still owes; an interrupted one is trained again."""

import os

import yaml

from slim.benchmark.runs import RunDiverged, evaluations, records, run_watched, say


def write_yaml(path, data):
    with open(path, 'w') as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def chosen_coef(run_dir):
    """The coefficient `auto` measured in a run (its train_log's Run record), or None."""
    for record in records(run_dir, 'Run'):
        values = list(record.get('coefs', {}).values())
        return values[0] if values and values[0] != 'auto' else None
    return None


def teacher_flags(teacher_config, teacher_weights, allow_weak_teacher=False):
    """distill_train.py's flags for the frozen teacher every distilled run shares."""
    flags = ['--teacher_config', teacher_config, '--teacher_model_path', teacher_weights]
    return flags + (['--allow_weak_teacher'] if allow_weak_teacher else [])


class SplitRuns:
    """Trains and scores runs on the split: every run has the same budget, evaluations and
    teacher, and is scored by its best evaluation on the held-out images."""

    def __init__(
        self, out_dir, split, student_config, teacher, task, iters, evaluations_per_run, cpu_threads
    ):
        """teacher: distill_train.py's teacher flags (`teacher_flags`)."""
        self.out_dir = out_dir
        self.split = split
        self.student_config = os.path.abspath(student_config)
        self.teacher = teacher
        self.task = task
        self.iters = iters
        self.evaluations_per_run = evaluations_per_run
        self.cpu_threads = cpu_threads
        self.configs = os.path.join(out_dir, 'configs')
        os.makedirs(self.configs, exist_ok=True)

    def on_split(self, out_dir, split):
        """Runs with these settings (configs, teacher, budget) in out_dir, on another split."""
        return SplitRuns(
            out_dir,
            split,
            self.student_config,
            self.teacher,
            self.task,
            self.iters,
            self.evaluations_per_run,
            self.cpu_threads,
        )

    def config(self, name, recipe=None):
        """configs/NAME.yml: the recipe (a student config dict; default: the student config
        as it is) pointed at the split."""
        recipe = recipe or {'_base_': self.student_config}
        return write_yaml(os.path.join(self.configs, f'{name}.yml'), {**recipe, **self.split})

    def finished(self, name):
        """Whether run NAME is whole (it has its last checkpoint)."""
        return os.path.isdir(os.path.join(self.out_dir, name, f'iter_{self.iters}'))

    def score(self, name):
        """Run NAME's best held-out score."""
        return max(s for _, s in evaluations(self.run_dir(name), self.task.primary_logged))

    def run_dir(self, name):
        return os.path.join(self.out_dir, name)

    def training_args(self, seed):
        """The flags every run shares: budget, seed, evaluations, threads."""
        every = max(self.iters // self.evaluations_per_run, 1)
        threads = ['--cpu_threads', str(self.cpu_threads)] if self.cpu_threads else []
        return [
            *('--iters', str(self.iters), '--seed', str(seed), '--do_eval'),
            *('--save_interval', str(every), '--keep_checkpoint_max', '1'),
            *('--log_iters', str(every), *threads),
        ]

    def alone(self, seed, name):
        """(best held-out score, seconds it trained: None if it was reused) of the student
        alone with this seed."""
        seconds = None
        if not self.finished(name):
            say(f'Training the student alone on the split, seed {seed} (the yardstick)')
            _, _, seconds = run_watched(
                [
                    'train.py',
                    *('--config', self.config('student_alone')),
                    *self.training_args(seed),
                    *('--save_dir', self.run_dir(name)),
                ],
                self.run_dir(name),
                self.task.primary_logged,
            )
        score = self.score(name)
        say(f'Student alone, seed {seed}: held-out {self.task.primary_label} {score:.4f}')
        return score, seconds

    def distill(self, config, seed, name, report=None):
        """(curve [(iter, score)], stopped early by `report`, seconds) of a distilled run."""
        return run_watched(
            [
                'distill_train.py',
                *self.teacher,
                *('--student_config', config),
                *self.training_args(seed),
                *('--save_dir', self.run_dir(name)),
            ],
            self.run_dir(name),
            self.task.primary_logged,
            report,
        )

    def whole_run_score(self, config, seed, name, label):
        """The best held-out score of a whole distilled run, trained unless it is done,
        and reported as `label, seed N: ...` (None: its loss diverged, and it loses)."""
        try:
            if not self.finished(name):
                self.distill(config, seed, name)
        except RunDiverged as exc:
            say(f'{label} with seed {seed}: {exc}; it loses')
            return None
        score = self.score(name)
        say(f'{label}, seed {seed}: held-out {self.task.primary_label} {score:.4f}')
        return score
