"""`make demo`: the quick start on CPU, end to end.

Prepares the synthetic optic disc data if absent, trains the teacher, the student alone and
the distilled student with the CPU configs, scores each best_model with val.py, and writes
output/demo/report.{md,json,png}.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import three_way  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--data', default='data/optic_disc_seg')
    parser.add_argument('--out', default='output/demo')
    parser.add_argument('--recipe', default='kl_cwd', choices=sorted(three_way.RECIPES))
    parser.add_argument('--teacher_iters', type=int, default=three_way.TEACHER_ITERS)
    parser.add_argument('--student_iters', type=int, default=three_way.STUDENT_ITERS)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--teacher_config', default=None, help='Override the CPU teacher.')
    parser.add_argument('--student_config', default=None, help='Override the recipe.')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    setup = three_way.Setup.from_args(args)
    three_way.ensure_data(args.data)
    teacher = three_way.train_teacher(setup, args.out, args.data, args.teacher_iters, args.seed)
    result = three_way.compare_students(setup, args.out, args.data, args.seed,
                                        args.student_iters, teacher)
    print(three_way.write_report(setup, args.out, teacher, [result]))
    print(f'Demo finished in {time.time() - start:.0f} s; report: {args.out}/report.md, '
          f'report.json, report.png')


if __name__ == '__main__':
    main()
