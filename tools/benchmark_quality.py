"""Distillation quality over K seeds: teacher, student alone, distilled student.

The teacher is trained once (or given with --teacher_weights); for each seed the student
alone and the distilled student get the same seed and the same iteration budget. Prints
mean ± std and per-seed gains; writes OUT/report.{json,md,png}.

CPU configs (default) or any pair, e.g. the GPU quick start on the real data:
  python tools/benchmark_quality.py --teacher_config configs/quick_start/..._teacher.yml \
      --student_config configs/quick_start/..._student.yml --teacher_iters 1000 \
      --student_iters 1000 --data data/optic_disc_seg --input_size 512
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import three_way  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--recipe', default='kl_cwd', choices=sorted(three_way.RECIPES),
                        help='Distillation recipe (a student config in configs/cpu).')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--data', default='data/optic_disc_seg')
    parser.add_argument('--out', default='output/benchmark_quality')
    parser.add_argument('--teacher_iters', type=int, default=three_way.TEACHER_ITERS)
    parser.add_argument('--student_iters', type=int, default=three_way.STUDENT_ITERS)
    parser.add_argument('--teacher_weights', default=None,
                        help='Reuse a trained teacher (its best_model/model.pdparams).')
    parser.add_argument('--teacher_config', default=None, help='Override the CPU teacher.')
    parser.add_argument('--student_config', default=None,
                        help='Override the student config (distill terms included).')
    parser.add_argument('--input_size', type=int, default=64, help='For the FLOPs column.')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup = three_way.Setup.from_args(args)
    start = time.time()
    three_way.ensure_data(args.data)
    if args.teacher_weights:
        teacher = three_way.score_teacher(setup, args.teacher_weights, args.data)
    else:
        teacher = three_way.train_teacher(setup, args.out, args.data, args.teacher_iters,
                                          args.seeds[0])
    results = [three_way.compare_students(setup, args.out, args.data, seed,
                                          args.student_iters, teacher)
               for seed in args.seeds]
    print(three_way.write_report(setup, args.out, teacher, results))
    print(f'Benchmark finished in {time.time() - start:.0f} s; {args.out}/report.json')


if __name__ == '__main__':
    main()
