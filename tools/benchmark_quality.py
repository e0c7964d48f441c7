"""Distillation quality over K seeds: teacher, student alone, distilled student.

The teacher is trained once (or given with --teacher_weights); for each seed the student
alone and the distilled student get the same seed and the same iteration budget. Prints
mean ± std and per-seed gains; writes OUT/report.{json,md,png}. --test_data DIR scores every
best_model, chosen on the val set, on DIR's val list too: the report's unbiased test figures.

Classification (ResNet50 -> MobileNetV1 on scikit-learn's digits, top-1; the digits are
written to data/digits when missing):
  python tools/benchmark_quality.py --task classification

Segmentation CPU configs (default) or any pair, e.g. the GPU quick start on the real data:
  python tools/benchmark_quality.py --teacher_config configs/quick_start/..._teacher.yml \
      --student_config configs/quick_start/..._student.yml --teacher_iters 1000 \
      --student_iters 1000 --data data/optic_disc_seg --teacher_data data/optic_disc_seg \
      --input_size 512
"""

import argparse

from paddleseg_ext.cli import ArgumentParser
from slim.benchmark.compare import run
from slim.benchmark.recipes import Setup, add_setup_arguments


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_setup_arguments(parser)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--out', default='output/benchmark_quality')
    parser.add_argument(
        '--teacher_weights',
        default=None,
        help='Reuse a trained teacher (its best_model/model.pdparams).',
    )
    parser.add_argument(
        '--student_runs',
        default=None,
        help='Folder of student-alone runs, reused when the student config '
        '(without its distill terms), seed, iterations and data match: '
        'give every recipe the same folder to train each seed once '
        '(default: --out).',
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run(
        Setup.from_args(args),
        args.out,
        args.seeds,
        args.teacher_iters,
        args.student_iters,
        args.teacher_weights,
        args.student_runs,
    )


if __name__ == '__main__':
    main()
