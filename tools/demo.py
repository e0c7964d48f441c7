"""`make demo`: the quick start on CPU, end to end.

Prepares the synthetic optic disc data if absent, trains the teacher, the student alone and
the distilled student with the CPU configs, scores each best_model with val.py, and writes
output/demo/report.{md,json,png}.
"""

from paddleseg_ext.cli import ArgumentParser
from slim.benchmark.compare import run
from slim.benchmark.recipes import Setup, add_setup_arguments


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_setup_arguments(parser)
    parser.add_argument('--out', default='output/demo')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run(Setup.from_args(args), args.out, [args.seed], args.teacher_iters, args.student_iters)


if __name__ == '__main__':
    main()
