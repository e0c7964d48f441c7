"""Plot training runs: loss terms over iterations and val mIoU, one colour per run.

Reads RUN_DIR/train_log.jsonl of each run (a train.py / distill_train.py --save_dir), e.g.

  python tools/plot_run.py output/student output/distilled --out output/runs.png

Needs matplotlib only: paddle is not imported.
"""

import argparse
import importlib.util
import os
import sys

from paddleseg_ext.cli import ArgumentParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOT_MODULE = os.path.join(REPO_ROOT, 'paddleseg_ext', 'deploy', 'plot.py')


def load_plot_module():
    """paddleseg_ext/deploy/plot.py by path: importing the package would import paddle."""
    spec = importlib.util.spec_from_file_location('paddleseg_ext_deploy_plot', PLOT_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    parser = ArgumentParser(
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
    plot = load_plot_module()
    try:
        plot.plot_runs(args.run_dirs, args.out, title=args.title)
    except plot.RunLogError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(1)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    main()
