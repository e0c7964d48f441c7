"""Post-training int8 quantization (PaddleSlim) of a model exported by tools/export.py.

Calibrates on --batch_nums batches of the config's train images (val transforms), writes the
int8 model to SAVE_DIR (model.pdmodel, model.pdiparams, deploy.yaml: usable by
tools/predict.py --inference_dir), then prints val mIoU and the median CPU latency per image
of the float and the int8 model, both through Paddle Inference. Needs the extras:
`pip install --no-deps -r requirements-slim.txt`. PaddleSlim reads paddle 2's program format
only: on paddle 3 export the float model with `tools/export.py --program_format pdmodel`. E.g.

  python tools/quantize.py \
      --config configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student.yml \
      --inference_dir output/student_infer --save_dir output/student_int8
"""

import argparse
import json

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.deploy.quantize import ALGOS, quantize
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--config',
        required=True,
        help='The training config: train set (calibration), val set, transforms.',
    )
    parser.add_argument(
        '--inference_dir', required=True, help='The float model: a tools/export.py --save_dir.'
    )
    parser.add_argument(
        '--save_dir', default='./output/quant_model', help='Where the int8 model goes.'
    )
    parser.add_argument('--batch_nums', type=int, default=10, help='Calibration batches.')
    parser.add_argument('--batch_size', type=int, default=1, help='Images per calibration batch.')
    parser.add_argument(
        '--algo',
        default='hist',
        choices=ALGOS,
        help="Activation scale method (PaddleSlim's; default hist).",
    )
    parser.add_argument(
        '--runs', type=int, default=20, help='Timed runs per model for the median latency.'
    )
    parser.add_argument('--cpu_threads', type=int, default=1, help='CPU threads for inference.')
    parser.add_argument('--json', default=None, help='Also write the comparison to this file.')
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def report(results):
    shape = 'x'.join(str(d) for d in results['float']['input_shape'])
    lines = [f'{"model":<6} {"val mIoU":>9} {"val Acc":>8} {"latency ms":>11} {"params MB":>10}']
    for name in ('float', 'int8'):
        r = results[name]
        lines.append(
            f'{name:<6} {r["miou"]:>9.4f} {r["acc"]:>8.4f} {r["latency_ms"]:>11.2f} '
            f'{r["params_mb"]:>10.1f}'
        )
    speedup = results['float']['latency_ms'] / results['int8']['latency_ms']
    lines.append(
        f'latency: median per {shape} image, Paddle Inference on CPU (oneDNN), '
        f'int8 speed-up x{speedup:.2f}'
    )
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)

    def run():
        setup_process('cpu')
        results = quantize(
            args.config,
            args.inference_dir,
            args.save_dir,
            batch_size=args.batch_size,
            batch_nums=args.batch_nums,
            algo=args.algo,
            runs=args.runs,
            cpu_threads=args.cpu_threads,
            opts=args.opts,
        )
        print(f'int8 model written to {args.save_dir}')
        print(report(results))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(results, f, indent=2)

    run_cli(run)


if __name__ == '__main__':
    main()
