"""Assembling a Distiller from the teacher and student configs."""
from paddleseg.utils import logger

from paddleseg_ext.config import build, build_model_without_weights, load_config
from paddleseg_ext.errors import UserInputError
from slim.distill.distiller import Distiller, build_aligners, parse_terms
from slim.distill.teacher import FrozenTeacher
from slim.distill.teacher_cache import TeacherCache, cache_blocker, cache_key

PROBE_INPUT_SHAPE = (1, 3, 128, 128)


def plain_distiller(config, builder):
    """No teacher, no terms: plain training of the config's model."""
    return Distiller(build(builder, 'model'))


def load_teacher_config(path, student_config):
    # The teacher config may be a full training config or just a model; only model is used.
    teacher_config = load_config(path, required=('model',))
    t_classes = teacher_config.dic['model'].get('num_classes')
    s_classes = student_config.dic['model'].get('num_classes')
    if t_classes is not None and s_classes is not None and t_classes != s_classes:
        raise UserInputError(f"num_classes differ: teacher config '{path}' has {t_classes}, "
                             f"the student config {s_classes}: they must predict the same classes")
    return teacher_config


def with_teacher_cache(teacher, cache_dir, config, builder, teacher_config, precision):
    """The teacher behind a TeacherCache when the train transforms allow it; else as is."""
    train_cfg = config.train_dataset_cfg
    blocker = cache_blocker(train_cfg.get('transforms', []))
    if blocker:
        logger.info(f'Teacher cache not used, the teacher runs online: {blocker}')
        return teacher
    dataset = build(builder, 'train_dataset')
    key = cache_key(teacher.weights_path, teacher_config.dic['model'], train_cfg,
                    dataset.file_list, teacher.recorder.paths, precision)
    return TeacherCache(teacher, cache_dir, key, len(dataset))


def distiller_factory(teacher_config_path, student_config_path, teacher_model_path=None,
                      teacher_cache=None, precision='fp32', teacher_engine='auto'):
    """make_distiller(config, builder) for the engine: checks, then teacher weights.

    teacher_cache: a folder for offline distillation (or the config's `teacher_cache`).
    teacher_engine: what runs the teacher's forward (slim.distill.teacher.TEACHER_ENGINES)."""

    def make_distiller(config, builder):
        teacher_config = load_teacher_config(teacher_config_path, config)
        terms = parse_terms(config, builder.build_component, student_config_path)
        if not terms:
            raise UserInputError(
                f"{student_config_path}: no distill_loss and no distill_features: nothing to "
                f"distill; add e.g. distill_loss: {{types: [{{type: KLLoss}}], coef: [3]}}")
        teacher_model, config_weights = build_model_without_weights(teacher_config)
        teacher_paths = [p for t in terms for p in (t.teacher_paths or [])]
        teacher = FrozenTeacher(teacher_model, teacher_paths, teacher_engine, precision)
        student = build(builder, 'model')
        aligners = build_aligners(terms, student, teacher_model, PROBE_INPUT_SHAPE,
                                  student_config_path, teacher_config_path)
        weights = teacher_model_path or config_weights
        if not weights:
            raise UserInputError(
                f"the teacher has no weights: set model.pretrained in '{teacher_config_path}' "
                f"to the trained teacher's best_model/model.pdparams, or pass "
                f"--teacher_model_path")
        teacher.load(weights)
        cache_dir = teacher_cache or config.dic.get('teacher_cache')
        if cache_dir:
            teacher = with_teacher_cache(teacher, cache_dir, config, builder, teacher_config,
                                         precision)
        return Distiller(student, teacher, terms, aligners)

    return make_distiller
