"""Distillation speed: student alone vs anchor-style vs ours online vs ours cached.

slim/benchmark/speed.py says what each mode measures and how.

  python tools/benchmark_speed.py [--json FILE] [--iters 20 --warmup 3 --rounds 2]
"""
import argparse
import os

from slim.benchmark.recipes import CPU_CONFIGS
from slim.benchmark.speed import MODES, measure, run_mode


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--student_config',
                        default=os.path.join(
                            CPU_CONFIGS,
                            'deeplabv3p_resnet18_os16_optic_disc_64x64_student_kl_feature_cwd.yml'))
    # The card's teacher architecture (ResNet50_vd), sized for CPU: speed needs no training.
    parser.add_argument('--teacher_config', default=os.path.join(
        CPU_CONFIGS, 'deeplabv3p_resnet50_os16_optic_disc_64x64_teacher.yml'))
    parser.add_argument('--teacher_weights', default=None,
                        help='Teacher .pdparams (default: its initial weights; speed does '
                             'not depend on the values).')
    parser.add_argument('--data', default='data/optic_disc_seg')
    parser.add_argument('--batch_size', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=20, help='Timed iterations per mode.')
    parser.add_argument('--rounds', type=int, default=2,
                        help='Runs of every mode, in alternating order; medians over all.')
    parser.add_argument('--num_workers', type=int, default=0)
    parser.add_argument('--cpu_threads', type=int, default=None,
                        help='CPU threads (default: all cores, as train.py).')
    parser.add_argument('--json', default=None)
    parser.add_argument('--mode', choices=MODES, help=argparse.SUPPRESS)  # worker process
    parser.add_argument('--work_dir', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.mode:
        run_mode(args)
    else:
        measure(args, os.path.abspath(__file__))


if __name__ == '__main__':
    main()
