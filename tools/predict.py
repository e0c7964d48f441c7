"""Predict images with trained weights or an exported model (PaddleSeg's predict.py).

--image_path is an image, a folder of images or a list file (first column: image path,
relative to the list file's folder). Writes SAVE_DIR/pseudo_color_prediction/<name>.png
(palette PNG of class ids) and SAVE_DIR/added_prediction/<name>.jpg (overlay); for a
classifier's config, SAVE_DIR/predictions.txt ("<image path> <class id>" per line), e.g.

  python tools/predict.py \
      --config configs/cpu/deeplabv3p_resnet18_os16_optic_disc_64x64_student.yml \
      --model_path output/student/best_model/model.pdparams \
      --image_path data/optic_disc_seg/JPEGImages --save_dir output/predict
"""

import argparse

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.deploy.predict import predict
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--config',
        required=True,
        help='The model/data YAML (its val_dataset transforms are applied).',
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--model_path', help='Weights: a .pdparams file or a folder holding model.pdparams.'
    )
    source.add_argument('--inference_dir', help='A folder written by tools/export.py.')
    parser.add_argument(
        '--image_path', required=True, help='An image, a folder of images, or a list file.'
    )
    parser.add_argument('--save_dir', default='./output/result')
    parser.add_argument('--device', default='auto', choices=['auto', 'gpu', 'cpu'])
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def run():
        setup_process(args.device)
        written = predict(
            args.config,
            args.image_path,
            args.save_dir,
            model_path=args.model_path,
            inference_dir=args.inference_dir,
            opts=args.opts,
        )
        print(f'Predicted {len(written)} image(s) into {args.save_dir}')

    run_cli(run)


if __name__ == '__main__':
    main()
