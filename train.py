"""Train a segmentation model from a PaddleSeg YAML config (PaddleSeg's train.py flags)."""

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.engine.cli import add_train_arguments, run_training
from slim.distill import plain_model


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--config', required=True, help='The model/data/schedule YAML.')
    return add_train_arguments(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run_cli(lambda: run_training(args, args.config, plain_model))


if __name__ == '__main__':
    main()
