"""Distillation speed: student alone vs anchor-style vs ours online vs ours cached.

slim/benchmark/speed.py says what each mode measures and how.

  python tools/benchmark_speed.py [--json FILE] [--iters 20 --warmup 3 --rounds 2]
  python tools/benchmark_speed.py --pair shipped --size 256 --augment \\
      --modes student online cached --data data/optic_disc_seg_384
"""

import argparse
import os

from paddleseg_ext.cli import ArgumentParser
from slim.benchmark.recipes import CPU_CONFIGS, RECIPES, TEACHER_CONFIG
from slim.benchmark.speed import MODES, measure, run_mode

# Which teacher and student configs --pair measures (a config flag overrides either).
PAIRS = {
    # The demo's pair and recipe: DeepLabV3P ResNet18_vd -> MobileSeg MobileNetV3_large, CWD.
    'shipped': (TEACHER_CONFIG, RECIPES['cwd_logits']),
    # DeepLabV3P ResNet50_vd -> ResNet18_vd with KL, a feature term and CWD.
    'r50_r18': (
        os.path.join(CPU_CONFIGS, 'deeplabv3p_resnet50_os16_optic_disc_64x64_teacher.yml'),
        os.path.join(
            CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_student_kl_feature_cwd.yml'
        ),
    ),
}


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--pair',
        choices=sorted(PAIRS),
        default='shipped',
        help='Teacher and student configs to measure (default: shipped, the '
        "demo's pair and recipe).",
    )
    parser.add_argument('--student_config', default=None)
    parser.add_argument('--teacher_config', default=None)
    parser.add_argument(
        '--size', type=int, default=None, help="Train at SxS (default: the configs' size)."
    )
    parser.add_argument(
        '--augment',
        action='store_true',
        help="PaddleSeg's random scale, crop, flip and colour jitter as the "
        'train transforms (the crop is --size).',
    )
    parser.add_argument(
        '--modes',
        nargs='+',
        choices=MODES,
        default=list(MODES),
        help='Modes to measure (default: all).',
    )
    parser.add_argument(
        '--teacher_weights',
        default=None,
        help='Teacher .pdparams (default: its initial weights; speed does '
        'not depend on the values).',
    )
    parser.add_argument('--data', default='data/optic_disc_seg')
    parser.add_argument('--batch_size', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=20, help='Timed iterations per mode.')
    parser.add_argument(
        '--rounds',
        type=int,
        default=2,
        help='Runs of every mode, in alternating order; medians over all.',
    )
    parser.add_argument('--num_workers', type=int, default=0)
    parser.add_argument(
        '--cpu_threads',
        type=int,
        default=None,
        help='CPU threads (default: all cores, as train.py).',
    )
    parser.add_argument('--json', default=None)
    parser.add_argument('--mode', choices=MODES, help=argparse.SUPPRESS)  # worker process
    parser.add_argument('--work_dir', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    teacher_config, student_config = PAIRS[args.pair]
    args.teacher_config = args.teacher_config or teacher_config
    args.student_config = args.student_config or student_config
    if args.augment and not args.size:
        raise SystemExit('--augment needs --size (the crop)')
    if args.mode:
        run_mode(args)
    else:
        measure(args, os.path.abspath(__file__))


if __name__ == '__main__':
    main()
