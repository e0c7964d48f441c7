"""`make demo`: the quick start on CPU, end to end.

Prepares the synthetic optic disc data if absent, trains the teacher, the student alone and
the distilled student with the CPU configs, scores each best_model with val.py, and writes
output/demo/report.{md,json,png}.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import three_way  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    three_way.add_setup_arguments(parser)
    parser.add_argument('--out', default='output/demo')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    three_way.run(three_way.Setup.from_args(args), args.out, [args.seed], args.teacher_iters,
                  args.student_iters)


if __name__ == '__main__':
    main()
