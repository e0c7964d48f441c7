"""Assembling a DistillModel from the configs: plain training, or a student under a teacher."""
from paddleseg.utils import logger

from paddleseg_ext.config import build, build_model_without_weights, load_config
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.supervised import SupervisedLoss
from slim.distill.model import DistillModel
from slim.distill.probe import connect
from slim.distill.schema import parse_terms
from slim.distill.teacher import FrozenTeacher
from slim.distill.teacher_cache import TeacherCache, cache_blocker, cache_key


def plain_model(config, builder):
    """No teacher, no terms: plain training of the config's model."""
    return DistillModel(build(builder, 'model'), SupervisedLoss(build(builder, 'loss')))


def with_teacher_cache(teacher, cache_dir, config, builder, teacher_config, precision):
    """The teacher behind a TeacherCache when the train transforms allow it; else as is."""
    train_cfg = config.train_dataset_cfg
    blocker = cache_blocker(train_cfg.get('transforms', []))
    if blocker:
        logger.info(f'Teacher cache not used, the teacher runs online: {blocker}')
        return teacher
    dataset = build(builder, 'train_dataset')
    key = cache_key(teacher.weights_path, teacher_config.dic['model'], train_cfg,
                    dataset.file_list, teacher.recorder.refs, precision)
    return TeacherCache(teacher, cache_dir, key, capacity=2 * len(dataset))


def distill_model_factory(teacher_config_path, student_config_path, teacher_model_path=None,
                          teacher_cache=None, precision='fp32', teacher_engine='auto'):
    """make_model(config, builder) for the engine: checks, then the teacher's weights.

    teacher_cache: a folder for offline distillation (or the config's `teacher_cache`).
    teacher_engine: what runs the teacher's forward (slim.distill.teacher.TEACHER_ENGINES)."""

    def make_model(config, builder):
        teacher_config = load_config(teacher_config_path, required=('model',))
        terms = parse_terms(config, builder.build_component, student_config_path)
        if not terms:
            raise UserInputError(
                f"{student_config_path}: no distill_loss and no distill_features: nothing to "
                f"distill; add e.g. distill_loss: {{types: [{{type: KLLoss}}], coef: [3]}}")
        teacher_model, config_weights = build_model_without_weights(teacher_config)
        student = build(builder, 'model')
        connectors = connect(terms, student, teacher_model, student_config_path,
                             teacher_config_path)
        weights = teacher_model_path or config_weights
        if not weights:
            raise UserInputError(
                f"the teacher has no weights: set model.pretrained in '{teacher_config_path}' "
                f"to the trained teacher's best_model/model.pdparams, or pass "
                f"--teacher_model_path")
        teacher = FrozenTeacher(teacher_model, [r for t in terms for r in t.teacher_refs or []],
                                teacher_engine, precision)
        teacher.load(weights)
        cache_dir = teacher_cache or config.dic.get('teacher_cache')
        if cache_dir:
            teacher = with_teacher_cache(teacher, cache_dir, config, builder, teacher_config,
                                         precision)
        return DistillModel(student, SupervisedLoss(build(builder, 'loss')), terms, connectors,
                            teacher)

    return make_model
