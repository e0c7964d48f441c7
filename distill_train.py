"""Train a student under a frozen teacher: python distill_train.py --teather_config T.yml
--student_config S.yml [train.py's flags]. The student config's distill_loss and
distill_features say what is compared; nothing else needs editing."""

import paddleseg_ext  # noqa: F401  (registers our components in paddleseg's manager)
from paddleseg_ext.cli import ArgumentParser, run_cli
from paddleseg_ext.engine.cli import add_train_arguments, prepare_run, run_training
from slim.distill import distill_model_factory
from slim.distill.listing import print_layers
from slim.distill.teacher import TEACHER_ENGINES


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    # --teather_config is the spelling of PaddleSeg's tutorial, which users type.
    parser.add_argument(
        '--teather_config',
        '--teacher_config',
        dest='teacher_config',
        required=True,
        help='The teacher model YAML (weights in model.pretrained).',
    )
    parser.add_argument(
        '--student_config',
        required=True,
        help='The student YAML: data, schedule, loss, distill_loss, distill_features.',
    )
    parser.add_argument(
        '--teacher_model_path',
        default=None,
        help='Teacher weights (.pdparams); overrides model.pretrained.',
    )
    parser.add_argument(
        '--teacher_cache',
        default=None,
        metavar='DIR',
        help='Offline distillation: compute the teacher once per input (or, '
        'under random scale, crop and flip, once per image, replayed on '
        'every view) and reuse it from DIR.',
    )
    parser.add_argument(
        '--teacher_engine',
        default='auto',
        choices=TEACHER_ENGINES,
        help='What runs the frozen teacher: inference (Paddle Inference, '
        'oneDNN on CPU), dygraph (no_grad), or auto: inference on CPU, '
        'dygraph on GPU.',
    )
    parser.add_argument(
        '--allow_weak_teacher',
        action='store_true',
        help='Distil even from a teacher that scores no better than predicting '
        'the majority class on the val set (checked before training).',
    )
    parser.add_argument(
        '--list_layers',
        nargs='?',
        const='',
        default=None,
        metavar='PREFIX',
        help='Print every sublayer path of both models with its output shape for the '
        "config's input size; with PREFIX (e.g. backbone.), only the paths under it.",
    )
    return add_train_arguments(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list_layers is not None:
        run_cli(
            lambda: (
                prepare_run(args),
                print_layers(args.teacher_config, args.student_config, args.list_layers),
            )
        )
        return
    make_model = distill_model_factory(
        args.teacher_config,
        args.student_config,
        args.teacher_model_path,
        args.teacher_cache,
        args.precision,
        args.teacher_engine,
        args.allow_weak_teacher,
    )
    run_cli(lambda: run_training(args, args.student_config, make_model))


if __name__ == '__main__':
    main()
