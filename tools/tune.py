"""Search a distillation recipe for your teacher-student pair: loss (CWD, KL, DIST) x how
hard it pulls (coef auto at a searched distill_auto_ratio) x temperature, with short
trials that are stopped early when they fall behind, starting from the shipped recipes.
The incumbent is your student config's own recipe where it has distill terms, else the
shipped one: it and the best few are trained again with fresh seeds, each seed scored on
other held-out images of the training list, and it stays the pick unless one beats it on
every fresh seed. Each trial is scored on a split carved from the training list, never on
val; slim/benchmark/tune.py says how.
Needs Optuna: pip install -r requirements-tune.txt

  python tools/tune.py --teacher_config T.yml --teacher_weights T/best_model/model.pdparams \
      --student_config S.yml --out output/tune

Writes OUT/best_student.yml (your student config with the winning distill_loss and
distill_auto_ratio, or as it is where your recipe stays: train it with distill_train.py
and judge it on val), OUT/trials.md and trials.json (every trial) and OUT/trials.png.
Run it again with the same --out to continue the search (the same inputs only:
OUT/search.json records them).
"""

import argparse

from paddleseg_ext.cli import ArgumentParser
from paddleseg_ext.errors import UserInputError
from slim.benchmark.tune import CONFIRM_SEEDS, FINALISTS, TuneError, tune


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--teacher_config', '--teather_config', required=True)
    parser.add_argument('--teacher_weights', required=True, help="The trained teacher's .pdparams.")
    parser.add_argument(
        '--student_config',
        required=True,
        help='The student config (data, schedule); each trial replaces its distill terms, '
        'which (if any) are the incumbent.',
    )
    parser.add_argument('--out', default='output/tune')
    parser.add_argument('--trials', type=int, default=24, help='Trials at most (default 24).')
    parser.add_argument(
        '--timeout',
        type=float,
        default=9 * 60,
        help='Seconds after which no trial starts (default 540); the finalists train after.',
    )
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help="Iterations per trial (default: the student config's). Trials are meant to be "
        'short: for a full-size schedule give a fraction of it (the tuner warns when fewer '
        'than half the trials fit in --timeout).',
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='Seed of the split and of every trial (default 0).'
    )
    parser.add_argument(
        '--finalists',
        type=int,
        default=FINALISTS,
        help=f'The best trials trained again with fresh seeds before the pick (default '
        f'{FINALISTS}; 0: pick on one seed).',
    )
    parser.add_argument(
        '--confirm_seeds',
        type=int,
        default=CONFIRM_SEEDS,
        help=f'How many fresh seeds (seed + 1 on) the finalists and the incumbent train again '
        f'with, each seed on its own held-out fold of the training list; the pick is made on '
        f'those alone (default {CONFIRM_SEEDS}).',
    )
    parser.add_argument('--cpu_threads', type=int, default=None)
    parser.add_argument(
        '--allow_weak_teacher',
        action='store_true',
        help="distill_train.py's flag, for every trial.",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        tune(
            args.teacher_config,
            args.teacher_weights,
            args.student_config,
            args.out,
            args.trials,
            args.timeout,
            args.iters,
            args.seed,
            cpu_threads=args.cpu_threads,
            allow_weak_teacher=args.allow_weak_teacher,
            finalists=args.finalists,
            confirm_seeds=args.confirm_seeds,
        )
    except (TuneError, UserInputError, RuntimeError) as exc:
        raise SystemExit(f'tune.py: error: {exc}') from None


if __name__ == '__main__':
    main()
