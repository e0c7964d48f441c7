"""Plot training runs: loss terms over iterations and val mIoU, one colour per run.

Reads RUN_DIR/train_log.jsonl of each run (a train.py / distill_train.py --save_dir), e.g.

  python tools/plot_run.py output/student output/distilled --out output/runs.png

Needs matplotlib only: paddle is not imported.
"""

import argparse
import sys

from slim.benchmark.run_plot import RunLogError, plot_runs


def parse_args(argv=None):
    # argparse itself: paddleseg_ext.cli would import paddle, which plotting does not need.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        'run_dirs',
        nargs='+',
        metavar='RUN_DIR',
        help='Training --save_dir folders (or train_log.jsonl files).',
    )
    parser.add_argument('--out', required=True, help='The PNG to write.')
    parser.add_argument('--title', default=None)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        plot_runs(args.run_dirs, args.out, title=args.title)
    except RunLogError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(1)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
