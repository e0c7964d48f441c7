"""What a benchmark compares: the task, the teacher and student configs, the recipe, the
data and the budgets."""

import os
from dataclasses import dataclass
from typing import Optional

import paddle

from paddleseg_ext.datasets.layout import list_file

CPU_CONFIGS = os.path.join('configs', 'cpu')
TEACHER_CONFIG = os.path.join(
    CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_teacher_moredata.yml'
)
# The compressed pair: DeepLabV3P ResNet18_vd (teacher) -> MobileSeg MobileNetV3_large.
STUDENT_CONFIG = os.path.join(
    CPU_CONFIGS, 'mobileseg_mobilenetv3_large_optic_disc_64x64_student.yml'
)
PAIR_PREFIX = os.path.join(CPU_CONFIGS, 'r18_to_mobileseg_mv3large_64x64_')

# Distillation recipes: name -> student config (its distill_loss), each with coef auto.
# Feature terms are not among them: on this pair none tried added anything to CWD of the
# logits on the tuner's folds (docs/recipes.md), so none is offered as a recipe.
RECIPES = {
    name: PAIR_PREFIX + name + '.yml'
    for name in (
        'kl',  # KL of the logits, PaddleSeg's tutorial's loss, at T=4
        'cwd_logits',  # channel-wise (CWD) on the logits: the demo's
        'dist',  # DIST on the logits
    )
}
# The demo's recipe on students whose coefficients no one tuned (coef auto), under the
# demo's teacher, and under PaddleSeg's random augmentation (the replay cache's benchmark).
UNTUNED_STUDENTS = {
    name: os.path.join(CPU_CONFIGS, f'r18_to_{name}_64x64_cwd_logits_auto.yml')
    for name in ('mobileseg_mv3small', 'fastscnn_aux', 'bisenetv2')
}
AUGMENTED_RECIPE = PAIR_PREFIX + 'cwd_logits_augmented.yml'
AUGMENTED_TEACHER = os.path.join(
    CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_teacher_augmented.yml'
)
CLASSIFICATION_CONFIGS = os.path.join('configs', 'classification')
CLASSIFICATION_RECIPES = {
    'kl': os.path.join(CLASSIFICATION_CONFIGS, 'mobilenetv1_digits_student.yml'),
}
DEFAULT_RECIPE = 'cwd_logits'
STUDENT_DATA = 'data/optic_disc_seg'
TEACHER_DATA = 'data/optic_disc_seg_teacher'
TEACHER_ITERS = 300
STUDENT_ITERS = 150

# Per task: what the flags left unset default to, and how runs are scored.
TASK_DEFAULTS = {
    'segmentation': dict(
        recipe=DEFAULT_RECIPE,
        recipes=RECIPES,
        teacher_config=TEACHER_CONFIG,
        data=STUDENT_DATA,
        teacher_data=TEACHER_DATA,
        teacher_iters=TEACHER_ITERS,
        student_iters=STUDENT_ITERS,
        input_size=64,
        teacher_cache=False,
    ),
    # The digits teacher trains on the students' data, for longer.
    'classification': dict(
        recipe='kl',
        recipes=CLASSIFICATION_RECIPES,
        teacher_config=os.path.join(CLASSIFICATION_CONFIGS, 'resnet50_digits_teacher.yml'),
        data='data/digits',
        teacher_data='data/digits',
        teacher_iters=600,
        student_iters=480,
        input_size=32,
        teacher_cache=True,
    ),
}


@dataclass
class Setup:
    """Which configs and data are compared. The student alone runs the recipe's student
    config with train.py (which ignores its distill terms): same model, data and schedule.
    The teacher trains on teacher_data and is scored on data's val set like the students.

    evaluations: val evaluations per run (best_model is the best of them); one for
    classification, whose runs all scored best at their last iteration and whose CPU
    budget is minutes.
    score_with_val_py: score each best_model with val.py (a process per run); otherwise
    the run's own evaluation of it, the same number (tests check they agree), where
    process start-ups would dominate a CPU budget of minutes (classification).
    teacher_cache: each distilled run keeps a teacher cache (offline distillation) in its
    folder, where the student's transforms allow one: worth it when the students see each
    image many times (classification: over eight epochs; a segmentation student sees its
    images under four times, so there the teacher runs online)."""

    recipe: str
    teacher_config: str
    student_config: str
    data: str
    teacher_data: str
    input_size: int = 64
    task: str = 'segmentation'
    evaluations: int = 6
    score_with_val_py: bool = True
    card_size: int = 512
    cpu_threads: Optional[int] = None
    jobs: int = 1
    teacher_cache: bool = False
    allow_weak_teacher: bool = False
    test_data: Optional[str] = None

    def run_threads(self):
        """CPU threads of each student run: --cpu_threads, else the cores shared among the
        runs that train side by side (None: all of them, the training CLIs' default)."""
        if self.cpu_threads or self.jobs == 1:
            return self.cpu_threads
        return max(1, (os.cpu_count() or 1) // self.jobs)

    @classmethod
    def from_args(cls, args):
        """From add_setup_arguments' flags; fills those left unset (args too, so callers
        read the budgets there) with the task's defaults."""
        defaults = TASK_DEFAULTS[args.task]
        for key in ('data', 'teacher_data', 'teacher_iters', 'student_iters', 'input_size'):
            if getattr(args, key, None) is None:
                setattr(args, key, defaults[key])
        recipe = args.recipe or defaults['recipe']
        if not args.student_config and recipe not in defaults['recipes']:
            raise SystemExit(
                f'--recipe {recipe}: the {args.task} recipes are '
                f'{", ".join(sorted(defaults["recipes"]))}'
            )
        if args.jobs is not None and args.jobs < 1:
            raise SystemExit(
                f'--jobs {args.jobs}: the number of runs side by side must be 1 or more'
            )
        if args.test_data is not None and not os.path.isfile(list_file(args.test_data, 'val')):
            raise SystemExit(
                f'--test_data {args.test_data}: no {list_file(args.test_data, "val")} (the '
                'test list); make a test set with python tools/prepare_data.py --synthetic 500 '
                f'--seed 3 --val_fraction 0.9 --out {args.test_data} (450 test images), or '
                f'from your images and masks with --images DIR --masks DIR --out {args.test_data}'
            )
        if args.test_data is not None and os.path.realpath(args.test_data) == os.path.realpath(
            args.data
        ):
            raise SystemExit(
                f'--test_data {args.test_data}: this is the --data folder, whose val set '
                'chooses each best_model; give a test set of other images'
            )
        classification = args.task == 'classification'
        return cls(
            recipe=recipe if not args.student_config else 'custom',
            teacher_config=args.teacher_config or defaults['teacher_config'],
            student_config=args.student_config or defaults['recipes'][recipe],
            data=args.data,
            teacher_data=args.teacher_data,
            input_size=args.input_size,
            task=args.task,
            evaluations=1 if classification else 6,
            score_with_val_py=not classification,
            card_size=args.card_size,
            cpu_threads=args.cpu_threads,
            teacher_cache=(
                defaults['teacher_cache']
                if args.teacher_cache is None
                else args.teacher_cache == 'on'
            ),
            jobs=args.jobs if args.jobs is not None else default_jobs(),
            allow_weak_teacher=args.allow_weak_teacher,
            test_data=args.test_data,
        )


def default_jobs():
    """Student runs side by side: two on a CPU with two cores or more, else one (a GPU
    runs one at a time at full speed)."""

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def add_setup_arguments(parser):
    """The flags demo.py and benchmark_quality.py share."""
    add = parser.add_argument
    add(
        '--task',
        default='segmentation',
        choices=sorted(TASK_DEFAULTS),
        help='segmentation: the optic disc CPU configs (mIoU); classification: ResNet50 -> '
        "MobileNetV1 on scikit-learn's digits (top-1).",
    )
    add(
        '--recipe',
        default=None,
        help=f'Distillation recipe (a student config): segmentation {sorted(RECIPES)} '
        f'(default {DEFAULT_RECIPE}), classification {sorted(CLASSIFICATION_RECIPES)}.',
    )
    add(
        '--data',
        default=None,
        help=f"The students' data (and everyone's val set); default {STUDENT_DATA} or data/digits.",
    )
    add('--teacher_data', default=None, help="The teacher's training data.")
    add(
        '--test_data',
        default=None,
        metavar='DIR',
        help='A test set (a data root like --data; its val list is read): every best_model, '
        'chosen on the val set, is scored on it too, and the report adds its figures '
        '(default: none).',
    )
    add(
        '--teacher_iters',
        type=int,
        default=None,
        help=f'Default {TEACHER_ITERS} (segmentation), '
        f'{TASK_DEFAULTS["classification"]["teacher_iters"]} (classification).',
    )
    add(
        '--student_iters',
        type=int,
        default=None,
        help=f'Default {STUDENT_ITERS} (segmentation), '
        f'{TASK_DEFAULTS["classification"]["student_iters"]} (classification).',
    )
    add('--teacher_config', default=None, help="Override the task's teacher config.")
    add(
        '--student_config',
        default=None,
        help='Override the student config (its distill terms are the recipe).',
    )
    add(
        '--input_size',
        type=int,
        default=None,
        help='Input size for the FLOPs column (default 64, or 32 for classification).',
    )
    add(
        '--card_size',
        type=int,
        default=512,
        help='Input side for the model card: FLOPs and CPU latency of 1x3xSxS (default 512, '
        'the size users deploy at).',
    )
    add(
        '--cpu_threads',
        type=int,
        default=None,
        help='CPU threads of each training run (default: the cores; 1 runs better on a '
        'machine shared with other jobs).',
    )
    add(
        '--teacher_cache',
        choices=('on', 'off'),
        default=None,
        help='Distilled runs keep a teacher cache in their folder (default: on for '
        'classification, off for segmentation); under random augmentation it is the '
        'replay cache.',
    )
    add(
        '--allow_weak_teacher',
        action='store_true',
        help="distill_train.py's flag for the distilled runs (a teacher trained for a few "
        'iterations, e.g. in a smoke test, fails its check).',
    )
    add(
        '--jobs',
        type=int,
        default=None,
        help='Student runs (alone and distilled, all seeds) trained side by side, the CPU '
        'cores shared among them (default: 2 on a CPU with 2 cores or more, 1 on a GPU).',
    )
    return parser
