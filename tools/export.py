"""Export trained weights for Paddle Inference (PaddleSeg's tools/export.py).

Writes SAVE_DIR/model.json (paddle 3; model.pdmodel on paddle 2 or with --program_format
pdmodel), model.pdiparams and deploy.yaml (the config's val transforms, input shape and
output op), e.g.

  python tools/export.py \
      --config configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student.yml \
      --model_path output/student/best_model/model.pdparams --save_dir output/student_infer
"""

import argparse

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.deploy.export import OUTPUT_OPS, PROGRAM_FORMATS, export_model
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--config', required=True, help='The model/data YAML.')
    parser.add_argument(
        '--model_path',
        required=True,
        help='Weights: a .pdparams file or a folder holding model.pdparams.',
    )
    parser.add_argument(
        '--save_dir',
        default='./output/inference_model',
        help='Where model.json (paddle 3) or model.pdmodel (paddle 2), '
        'model.pdiparams and deploy.yaml go.',
    )
    parser.add_argument(
        '--input_shape',
        type=int,
        nargs=4,
        default=None,
        metavar=('N', 'C', 'H', 'W'),
        help='Fixed input shape, e.g. 1 3 512 512; -1 for a dynamic size '
        "(default: -1 C -1 -1, C the val_dataset's img_channels, 3 "
        'where unset).',
    )
    parser.add_argument(
        '--output_op',
        default='argmax',
        choices=OUTPUT_OPS,
        help='Applied to the logits in the exported model (default argmax).',
    )
    parser.add_argument(
        '--program_format',
        default=None,
        choices=PROGRAM_FORMATS,
        help="json: paddle 3's program (its default); pdmodel: paddle 2's "
        "(paddle 2's only one), which tools/quantize.py needs.",
    )
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def export():
        setup_process('cpu')
        info = export_model(
            args.config,
            args.model_path,
            args.save_dir,
            args.input_shape,
            args.output_op,
            opts=args.opts,
            program_format=args.program_format,
        )
        print(
            f'Exported to {args.save_dir}: {info["Deploy"]["model"]}, model.pdiparams, deploy.yaml'
        )

    run_cli(export)


if __name__ == '__main__':
    main()
