"""Assembling a DistillModel from the configs: plain training, or a student under a teacher."""

from paddleseg.utils import logger

from paddleseg_ext.components import build, build_model_without_weights, dataset_task
from paddleseg_ext.config import load_config
from paddleseg_ext.datasets.source_map import replay_plan, track_sources
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.supervised import SupervisedLoss
from slim.distill.model import DistillModel
from slim.distill.probe import connect
from slim.distill.schema import parse_auto_ratio, parse_terms
from slim.distill.teacher import FrozenTeacher
from slim.distill.teacher_cache import TeacherCache, cache_blocker, cache_key
from slim.distill.teacher_check import check_teacher
from slim.distill.teacher_replay import TeacherReplayCache, replay_key


def plain_model(config, builder):
    """No teacher, no terms: plain training of the config's model."""
    return DistillModel(build(builder, 'model'), SupervisedLoss(build(builder, 'loss')))


def replay_blocker(dataset, train_cfg, teacher):
    """Why the replay cache cannot serve this dataset and teacher, or None."""
    if dataset_task(train_cfg) != 'segmentation':
        return 'only segmentation logits can be replayed on random views'
    if not hasattr(dataset, 'read_sample'):
        return (
            f"the replay cache reads the images of this project's datasets (Dataset, "
            f'OpticDiscSeg), not of {type(dataset).__name__}'
        )
    if teacher.recorder.refs:
        return "the replay cache holds the teacher's logits, and the recipe distils features"
    return None


def with_teacher_cache(teacher, cache_dir, config, builder, teacher_config, precision):
    """The teacher behind a cache: a TeacherCache of each distinct input when the train
    transforms are deterministic, else a TeacherReplayCache of each image's logits where
    they can be replayed on its random views; else as is, with one line saying why."""
    train_cfg = config.train_dataset_cfg
    transforms = train_cfg.get('transforms', [])
    dataset = build(builder, 'train_dataset')
    random_transforms = cache_blocker(transforms)
    if not random_transforms:
        key = cache_key(
            teacher.weights_path,
            teacher_config.dic['model'],
            train_cfg,
            dataset.file_list,
            teacher.recorder.refs,
            precision,
        )
        return TeacherCache(teacher, cache_dir, key, capacity=2 * len(dataset))
    prefix, blocker = replay_plan(transforms)
    blocker = blocker or replay_blocker(dataset, train_cfg, teacher)
    if blocker:
        logger.info(
            f'Teacher cache not used, the teacher runs online: {random_transforms}; {blocker}'
        )
        return teacher
    track_sources(dataset, prefix)
    key = replay_key(
        teacher.weights_path,
        teacher_config.dic['model'],
        train_cfg,
        prefix,
        dataset.file_list,
        precision,
    )
    return TeacherReplayCache(teacher, dataset, prefix, cache_dir, key)


def distill_model_factory(
    teacher_config_path,
    student_config_path,
    teacher_model_path=None,
    teacher_cache=None,
    precision='fp32',
    teacher_engine='auto',
    allow_weak_teacher=False,
    wrap_teacher=None,
):
    """make_model(config, builder) for the engine: checks, then the teacher's weights, then
    the teacher's score against the majority class (slim.distill.teacher_check).

    teacher_cache: a folder for offline distillation (or the config's `teacher_cache`).
    teacher_engine: what runs the teacher's forward (slim.distill.teacher.TEACHER_ENGINES).
    allow_weak_teacher: go on, with a warning, when the teacher fails its check.
    wrap_teacher: FrozenTeacher -> teacher.Teacher, applied before any cache (the speed
    benchmark's PaddleSlim-style teacher is one)."""

    def make_model(config, builder):
        teacher_config = load_config(teacher_config_path, required=('model',))
        terms = parse_terms(config, builder.build_component, student_config_path)
        if not terms:
            raise UserInputError(
                f'{student_config_path}: no distill_loss and no distill_features: nothing to '
                f'distill; add e.g. distill_loss: {{types: [{{type: KLDivergenceLoss}}], '
                f'coef: [auto]}}'
            )
        auto_ratio = parse_auto_ratio(config, terms, student_config_path)
        # The student first: with the same seed it starts from the weights train.py gives
        # it, so a distilled run and the student alone differ by the teacher only.
        student = build(builder, 'model')
        teacher_model, config_weights = build_model_without_weights(teacher_config)
        connectors = connect(
            terms, student, teacher_model, student_config_path, teacher_config_path
        )
        weights = teacher_model_path or config_weights
        if not weights:
            raise UserInputError(
                f"the teacher has no weights: set model.pretrained in '{teacher_config_path}' "
                f"to the trained teacher's best_model/model.pdparams, or pass "
                f'--teacher_model_path'
            )
        teacher = FrozenTeacher(
            teacher_model,
            [r for t in terms for r in t.teacher_refs or []],
            teacher_engine,
            precision,
        )
        teacher.load(weights)
        if wrap_teacher is not None:
            teacher = wrap_teacher(teacher)
        if config.val_dataset_cfg:
            check_teacher(
                teacher_model,
                build(builder, 'val_dataset'),
                teacher_config_path,
                allow_weak_teacher,
            )
        else:
            logger.warning(
                f'{student_config_path} has no val_dataset: the teacher is not '
                f'checked before training'
            )
        cache_dir = teacher_cache or config.dic.get('teacher_cache')
        if cache_dir:
            teacher = with_teacher_cache(
                teacher, cache_dir, config, builder, teacher_config, precision
            )
        return DistillModel(
            student,
            SupervisedLoss(build(builder, 'loss')),
            terms,
            connectors,
            teacher,
            auto_ratio,
        )

    return make_model
