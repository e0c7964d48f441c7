"""Evaluate trained weights on the config's val set (PaddleSeg's val.py): mIoU and per-class
IoU for segmentation, top-1 and top-5 accuracy for classification."""

import json

from paddleseg.cvlibs import SegBuilder

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.components import build, build_model_without_weights
from paddleseg_ext.config import load_config
from paddleseg_ext.evaluation import task_of
from paddleseg_ext.evaluation.inference import InferenceOptions
from paddleseg_ext.pretrained import load_weights
from paddleseg_ext.process import setup_process


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='The model/data YAML.')
    parser.add_argument(
        '--model_path',
        required=True,
        help='Weights: a .pdparams file or a folder holding model.pdparams.',
    )
    parser.add_argument(
        '--json',
        default=None,
        help='Also write the metrics to this file: {"miou", "acc", ...} for '
        'segmentation, {"top1", "top5", ...} for classification.',
    )
    parser.add_argument('--num_workers', type=int, default=0)
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'bf16'])
    parser.add_argument('--device', default='auto', choices=['auto', 'gpu', 'cpu'])
    parser.add_argument('--opts', nargs='+', default=None, metavar='KEY=VALUE')
    # PaddleSeg's test-time options.
    parser.add_argument(
        '--aug_eval',
        action='store_true',
        help='Multi-scale / flip evaluation: softmax averaged over the augmented predictions.',
    )
    parser.add_argument(
        '--scales',
        type=float,
        nargs='+',
        default=[1.0],
        help='With --aug_eval: input scale factors, e.g. 0.75 1.0 1.25.',
    )
    parser.add_argument(
        '--flip_horizontal',
        action='store_true',
        help='With --aug_eval: also predict the horizontally flipped image.',
    )
    parser.add_argument(
        '--flip_vertical',
        action='store_true',
        help='With --aug_eval: also predict the vertically flipped image.',
    )
    parser.add_argument(
        '--is_slide',
        action='store_true',
        help='Sliding-window inference (needs --crop_size and --stride).',
    )
    parser.add_argument(
        '--crop_size',
        type=int,
        nargs=2,
        default=None,
        metavar=('W', 'H'),
        help='With --is_slide: window size.',
    )
    parser.add_argument(
        '--stride',
        type=int,
        nargs=2,
        default=None,
        metavar=('W', 'H'),
        help='With --is_slide: window step (at most the window size).',
    )
    return parser.parse_args(argv)


def inference_options(args):
    return InferenceOptions(
        aug_eval=args.aug_eval,
        scales=args.scales,
        flip_horizontal=args.flip_horizontal,
        flip_vertical=args.flip_vertical,
        is_slide=args.is_slide,
        crop_size=args.crop_size,
        stride=args.stride,
    )


def validate(args):
    inference = inference_options(args)  # flag mistakes first, before any model is built
    setup_process(args.device)  # evaluation on all CPU cores, as training
    config = load_config(args.config, opts=args.opts, required=('model', 'val_dataset'))
    dataset = build(SegBuilder(config), 'val_dataset')
    model, _ = build_model_without_weights(config)  # --model_path is the weights evaluated
    load_weights(model, args.model_path)
    task = task_of(dataset)
    metrics = task.evaluate(
        model, dataset, num_workers=args.num_workers, precision=args.precision, inference=inference
    )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({key: metrics[key] for key in task.json_keys}, f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    run_cli(lambda: validate(args))


if __name__ == '__main__':
    main()
