"""What train.py and distill_train.py share: flags, run set-up, error reporting."""

from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.engine.trainer import Trainer, TrainOptions
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.process import setup_process


def add_train_arguments(parser):
    """PaddleSeg's train.py flags, plus --precision, --device and --opts."""
    add = parser.add_argument
    add('--iters', type=int, help="Training iterations (default: the config's).")
    add('--batch_size', type=int, help="Images per process and step (default: the config's).")
    add('--learning_rate', type=float, help="Base learning rate (default: the config's).")
    add('--save_interval', type=int, default=1000, help='Checkpoint (and eval) every N iters.')
    add('--save_dir', default='./output', help='Where checkpoints, best_model and logs go.')
    add('--do_eval', action='store_true', help='Evaluate at each save; keep best_model.')
    add('--use_vdl', action='store_true', help='Write VisualDL scalars to save_dir.')
    add('--num_workers', type=int, default=0, help='DataLoader worker processes.')
    add('--seed', type=int, default=None, help='Random seed (data order, transforms, init).')
    add(
        '--resume_model',
        default=None,
        help="A save_dir/iter_N checkpoint to resume, or 'auto' for the newest in save_dir.",
    )
    add('--log_iters', type=int, default=10, help='Log every N iterations.')
    add('--keep_checkpoint_max', type=int, default=5, help='Newest iter_N folders to keep.')
    add(
        '--precision',
        default='fp32',
        choices=['fp32', 'fp16', 'bf16'],
        help='Mixed precision on GPU (fp16 uses a GradScaler); ignored on CPU.',
    )
    add(
        '--device',
        default='auto',
        choices=['auto', 'gpu', 'cpu'],
        help='auto: GPU when paddle sees one, else CPU.',
    )
    add(
        '--cpu_threads',
        type=int,
        default=None,
        help='Threads per process for CPU math (default: the cores / the processes).',
    )
    add(
        '--opts',
        nargs='+',
        default=None,
        metavar='KEY=VALUE',
        help='Override config entries, e.g. train_dataset.dataset_root=data/x',
    )
    return parser


def prepare_run(args):
    """The process set-up of train.py and distill_train.py, from their flags."""
    setup_process(args.device, args.cpu_threads, args.seed)


def train_options(args):
    return TrainOptions(
        save_dir=args.save_dir,
        iters=args.iters,
        save_interval=args.save_interval,
        do_eval=args.do_eval,
        use_vdl=args.use_vdl,
        num_workers=args.num_workers,
        seed=args.seed,
        resume_model=args.resume_model,
        log_iters=args.log_iters,
        keep_checkpoint_max=args.keep_checkpoint_max,
        precision=args.precision,
    )


def check_positive(args):
    for name in ('iters', 'batch_size', 'save_interval', 'log_iters'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserInputError(f'--{name} must be a positive integer, got {value}')


def load_student_config(args, path):
    return load_config(
        path,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        iters=args.iters,
        opts=args.opts,
    )


def run_training(args, config_path, make_model):
    """Loads config_path, builds the model with make_model(config, builder), trains it."""
    check_positive(args)
    prepare_run(args)
    config = load_student_config(args, config_path)
    builder = SegBuilder(config)
    model = make_model(config, builder)
    # Datasets are built before training so their errors come before any checkpoint.
    build(builder, 'train_dataset')
    if args.do_eval:
        build(builder, 'val_dataset')
    Trainer(train_options(args), config, builder, model).train()
