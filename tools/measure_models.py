"""Parameters, FLOPs and fp32 CPU latency of models, side by side (a markdown table).

The first config is the reference: every latency is also given as a ratio to it, measured
in the same run (the models are timed back to back, round after round, on one thread
through Paddle Inference), so the ratio holds on a busy machine where the milliseconds do
not. Weights do not matter for these figures: each model is exported as initialised. E.g.

  python tools/measure_models.py \\
      configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_teacher_moredata.yml \\
      configs/cpu/mobileseg_mobilenetv3_large_optic_disc_64x64_student.yml --input_size 512
"""

import argparse
import json

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.deploy.measure import measure
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('configs', nargs='+', help='Model configs; the first is the reference.')
    parser.add_argument(
        '--input_size',
        type=int,
        default=512,
        help='Square input side for FLOPs and latency (default 512).',
    )
    parser.add_argument('--rounds', type=int, default=5, help='Rounds of back-to-back timing.')
    parser.add_argument('--runs', type=int, default=10, help='Timed runs per model per round.')
    parser.add_argument('--cpu_threads', type=int, default=1)
    parser.add_argument('--json', default=None, help='Also write the figures to this file.')
    return parser.parse_args(argv)


def table(costs, input_size):
    reference = costs[0]
    lines = [
        f'| config | params | FLOPs (1x3x{input_size}x{input_size}) | fp32 CPU latency '
        f'(ms, 1 thread) | params / ref | FLOPs / ref | latency / ref |',
        '|---|---|---|---|---|---|---|',
    ]
    for cost in costs:
        lines.append(
            f'| `{cost.config}` | {cost.params / 1e6:.2f} M | {cost.flops / 1e9:.2f} G '
            f'| {cost.latency_ms:.1f} | {cost.params / reference.params:.3f} | '
            f'{cost.flops / reference.flops:.3f} | {cost.latency_ratio:.3f} |'
        )
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)

    def run():
        setup_process('cpu', threads=args.cpu_threads)
        costs = measure(args.configs, args.input_size, args.rounds, args.runs, args.cpu_threads)
        print(table(costs, args.input_size))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump([vars(cost) for cost in costs], f, indent=2)

    run_cli(run)


if __name__ == '__main__':
    main()
