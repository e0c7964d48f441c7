"""Does a teacher suit the replay cache? Compares, on a student config's random training
views, the teacher's logits with what the replay cache serves for the same views
(slim/benchmark/replay_error.py says how).

  python tools/replay_error.py --teacher_config T.yml --teacher_weights T.pdparams \
      --student_config S.yml [--samples 40]
"""

import argparse
import json

from paddleseg_ext.cli import ArgumentParser, run_cli
from slim.benchmark.replay_error import replay_error


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--teacher_config', '--teather_config', required=True)
    parser.add_argument('--teacher_weights', required=True)
    parser.add_argument(
        '--student_config', required=True, help='Its train transforms and data make the views.'
    )
    parser.add_argument('--samples', type=int, default=40)
    parser.add_argument(
        '--opts',
        nargs='+',
        default=None,
        help='Config overrides, e.g. train_dataset.dataset_root=data/x',
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run_cli(
        lambda: print(
            json.dumps(
                replay_error(
                    args.teacher_config,
                    args.teacher_weights,
                    args.student_config,
                    args.samples,
                    args.opts,
                ),
                indent=2,
            )
        )
    )


if __name__ == '__main__':
    main()
