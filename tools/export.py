"""Export trained weights for Paddle Inference (PaddleSeg's tools/export.py).

Writes SAVE_DIR/model.pdmodel, model.pdiparams and deploy.yaml (the config's val transforms,
input shape and output op), e.g.

  python tools/export.py \
      --config configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student.yml \
      --model_path output/student/best_model/model.pdparams --save_dir output/student_infer
"""
import argparse

import paddleseg_ext  # noqa: F401  (first: registers datasets, loads Pillow before paddle)
from paddleseg_ext.deploy.export import OUTPUT_OPS, export_model
from paddleseg_ext.engine.cli import run_cli
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='The model/data YAML.')
    parser.add_argument('--model_path', required=True,
                        help='Weights: a .pdparams file or a folder holding model.pdparams.')
    parser.add_argument('--save_dir', default='./output/inference_model',
                        help='Where model.pdmodel, model.pdiparams and deploy.yaml go.')
    parser.add_argument('--input_shape', type=int, nargs=4, default=None,
                        metavar=('N', 'C', 'H', 'W'),
                        help='Fixed input shape, e.g. 1 3 512 512; -1 for a dynamic size '
                             '(default: -1 3 -1 -1).')
    parser.add_argument('--output_op', default='argmax', choices=OUTPUT_OPS,
                        help='Applied to the logits in the exported model (default argmax).')
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def export():
        setup_process('cpu')
        export_model(args.config, args.model_path, args.save_dir, args.input_shape,
                     args.output_op, opts=args.opts)
        print(f'Exported to {args.save_dir}: model.pdmodel, model.pdiparams, deploy.yaml')

    run_cli(export)


if __name__ == '__main__':
    main()
