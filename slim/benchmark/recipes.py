"""What a benchmark compares: the teacher and student configs, the recipe, the data."""
import os
from dataclasses import dataclass
from typing import Optional

CPU_CONFIGS = os.path.join('configs', 'cpu')
TEACHER_CONFIG = os.path.join(
    CPU_CONFIGS, 'deeplabv3p_resnet18_os16_optic_disc_64x64_teacher_moredata.yml')
# The compressed pair: DeepLabV3P ResNet18_vd (teacher) -> MobileSeg MobileNetV3_large.
STUDENT_CONFIG = os.path.join(CPU_CONFIGS, 'mobileseg_mobilenetv3_large_optic_disc_64x64_student.yml')
PAIR_PREFIX = os.path.join(CPU_CONFIGS, 'r18_to_mobileseg_mv3large_64x64_')

# Distillation recipes: name -> student config (its distill_loss / distill_features).
RECIPES = {name: PAIR_PREFIX + name + '.yml' for name in (
    'kl',                               # PaddleSeg's tutorial: KLLoss coef 3
    'cwd_logits',                       # channel-wise (CWD) on the logits
    'dist',                             # DIST on the logits
    'pairwise',                         # pair-wise affinity of the logits
    'pairwise_features',                # pair-wise affinity of decoder features
    'cwd_logits_pairwise_features',     # the two above together
)}
DEFAULT_RECIPE = 'cwd_logits'
STUDENT_DATA = 'data/optic_disc_seg'
TEACHER_DATA = 'data/optic_disc_seg_teacher'
TEACHER_ITERS = 600
STUDENT_ITERS = 150


@dataclass
class Setup:
    """Which configs and data are compared. The student alone runs the recipe's student
    config with train.py (which ignores its distill terms): same model, data and schedule.
    The teacher trains on teacher_data and is scored on data's val set like the students."""
    recipe: str
    teacher_config: str
    student_config: str
    data: str
    teacher_data: str
    input_size: int = 64
    card_size: int = 512
    cpu_threads: Optional[int] = None

    @classmethod
    def from_args(cls, args):
        return cls(recipe=args.recipe if not args.student_config else 'custom',
                   teacher_config=args.teacher_config or TEACHER_CONFIG,
                   student_config=args.student_config or RECIPES[args.recipe],
                   data=args.data, teacher_data=args.teacher_data,
                   input_size=getattr(args, 'input_size', 64),
                   card_size=getattr(args, 'card_size', 512),
                   cpu_threads=getattr(args, 'cpu_threads', None))


def add_setup_arguments(parser):
    """The flags demo.py and benchmark_quality.py share."""
    add = parser.add_argument
    add('--recipe', default=DEFAULT_RECIPE, choices=sorted(RECIPES),
        help='Distillation recipe (a student config in configs/cpu).')
    add('--data', default=STUDENT_DATA, help="The students' data (and everyone's val set).")
    add('--teacher_data', default=TEACHER_DATA, help="The teacher's training data.")
    add('--teacher_iters', type=int, default=TEACHER_ITERS)
    add('--student_iters', type=int, default=STUDENT_ITERS)
    add('--teacher_config', default=None, help='Override the CPU teacher config.')
    add('--student_config', default=None,
        help='Override the student config (its distill terms are the recipe).')
    add('--input_size', type=int, default=64, help='Input size for the FLOPs column.')
    add('--card_size', type=int, default=512,
        help='Input side for the model card: FLOPs and CPU latency of 1x3xSxS (default 512, '
             'the size users deploy at).')
    add('--cpu_threads', type=int, default=None,
        help='CPU threads of each training run (default: the cores; 1 runs better on a '
             'machine shared with other jobs).')
    return parser
