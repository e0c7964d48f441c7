"""How to compare: distillation terms from YAML, and the trainable student side.

A term names a loss, its coefficient, an iteration window, and which tensors it compares:
the models' logits (`distill_loss`) or recorded sublayer outputs (`distill_features`).
With no teacher there are no terms, and training is plain training: one engine serves both.
"""
from dataclasses import dataclass, field
from typing import List, Optional

import paddle.nn as nn
from paddleseg.cvlibs import manager

from paddleseg_ext.config import closest
from paddleseg_ext.errors import UserInputError
from slim.distill.connectors import ChannelAligner
from slim.distill.recorder import FeatureRecorder, dummy_forward
from slim.distill.teacher_cache import TeacherCache

FEATURE_TERM_KEYS = ('student', 'teacher', 'loss', 'coef', 'align', 'start_iter', 'end_iter',
                     'name')


@dataclass
class DistillTerm:
    """coef * loss(student tensors, teacher tensors), for iterations start_iter+1 .. end_iter."""
    name: str
    loss: nn.Layer
    coef: float
    student_paths: Optional[List[str]] = None  # None: compare logits
    teacher_paths: Optional[List[str]] = None
    paired: bool = False  # the loss takes lists of tensors (FSPLoss), not one tensor each
    align: bool = False
    start_iter: int = 0
    end_iter: Optional[int] = None
    aligner_keys: List[Optional[str]] = field(default_factory=list)

    def active(self, iteration):
        return iteration > self.start_iter and (self.end_iter is None
                                                or iteration <= self.end_iter)


class DistillStudent(nn.Layer):
    """The student plus its align layers: the one Layer the optimizer and DataParallel see.

    forward returns the student's logits and, per active feature term, the student tensors
    that term compares (after alignment). Aligners run inside forward so DataParallel
    synchronises their gradients too.
    """

    def __init__(self, student, terms, aligners):
        super().__init__()
        self.student = student
        self.terms = terms
        self.aligners = nn.LayerDict(aligners)
        paths = [p for term in terms for p in (term.student_paths or [])]
        self.recorder = FeatureRecorder(student, paths, 'student')

    def forward(self, images, active_terms=()):
        logits = self.student(images)
        records = self.recorder.pop()
        term_inputs = {}
        for index in active_terms:
            term = self.terms[index]
            if term.student_paths is None:
                continue
            tensors = [records[path] if key is None else self.aligners[key](records[path])
                       for path, key in zip(term.student_paths, term.aligner_keys)]
            term_inputs[index] = tensors
        return logits, term_inputs

    def aligner_state_dict(self):
        return self.aligners.state_dict()


class Distiller:
    """Owns the teacher and the terms; the training engine asks it for extra losses."""

    def __init__(self, student, teacher=None, terms=(), aligners=None):
        self.teacher = teacher
        self.terms = list(terms)
        self.trainable = DistillStudent(student, self.terms, aligners or {})

    @property
    def student(self):
        return self.trainable.student

    def active_terms(self, iteration):
        return [i for i, term in enumerate(self.terms) if term.active(iteration)]

    @property
    def uses_teacher_cache(self):
        return isinstance(self.teacher, TeacherCache)

    def teacher_outputs(self, images, active_terms, sample_keys=None):
        """The teacher's (logits, records), or None when no term needs them."""
        if self.teacher is None or not active_terms:
            return None
        return self.teacher(images, sample_keys)

    def losses(self, active_terms, student_logits, term_inputs, teacher_outputs, label):
        """[(term name, coef * loss)] for the active terms."""
        if teacher_outputs is None:
            return []
        teacher_logits, teacher_records = teacher_outputs
        weighted = []
        for index in active_terms:
            term = self.terms[index]
            if term.student_paths is None:
                value = term.loss(student_logits, teacher_logits, label)
            else:
                student = term_inputs[index]
                teacher = [teacher_records[p] for p in term.teacher_paths]
                if not term.paired:
                    student, teacher = student[0], teacher[0]
                value = term.loss(student, teacher)
            weighted.append((term.name, term.coef * value))
        return weighted


def _as_paths(value, role, index):
    paths = [value] if isinstance(value, str) else value
    if not paths or not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise UserInputError(f"distill_features[{index}].{role}: expected a dotted layer path "
                             f"or a list of them, got {value!r}")
    return paths


def _number(value, key, minimum=None, integer=False):
    kinds = int if integer else (int, float)
    if value is None or isinstance(value, bool) or not isinstance(value, kinds) or (
            minimum is not None and value < minimum):
        raise UserInputError(f"{key}: expected {'an integer' if integer else 'a number'}"
                             f"{'' if minimum is None else f' >= {minimum}'}, got {value!r}")
    return value


def _build_loss(loss_cfg, where, build_component):
    if not isinstance(loss_cfg, dict) or 'type' not in loss_cfg:
        raise UserInputError(f"{where}: expected a mapping with `type:`, e.g. "
                             f"{{type: ChannelWiseDistillLoss, tau: 4}}, got {loss_cfg!r}")
    if loss_cfg['type'] not in manager.LOSSES.components_dict:
        raise UserInputError(f"{where}: unknown type {loss_cfg['type']!r}: registered losses: "
                             f"{', '.join(sorted(manager.LOSSES.components_dict))}")
    try:
        return build_component(loss_cfg)
    except Exception as exc:
        message = ' '.join(str(exc).split()).split('The error message is: ')[-1]
        raise UserInputError(f"{where}: cannot build {loss_cfg['type']}: {message}: check "
                             f"its arguments") from None


def parse_terms(config, build_component, config_path=''):
    """DistillTerms from the student config's `distill_loss` and `distill_features`."""
    terms = []
    prefix = f"{config_path}: " if config_path else ''
    distill_loss = config.distill_loss_cfg
    if distill_loss:
        types, coefs = distill_loss.get('types', []), distill_loss.get('coef', [])
        if not isinstance(types, list) or not isinstance(coefs, list) or len(types) != len(coefs):
            raise UserInputError(f"{prefix}distill_loss: expected lists `types` and `coef` of "
                                 f"equal length, got {len(types)} types and {len(coefs)} coef")
        for index, (loss_cfg, coef) in enumerate(zip(types, coefs)):
            where = f"{prefix}distill_loss.types[{index}]"
            loss = _build_loss(loss_cfg, where, build_component)
            terms.append(DistillTerm(name=f"{loss_cfg['type']}(logits)", loss=loss,
                                     coef=_number(coef, f'{prefix}distill_loss.coef')))
    for index, item in enumerate(config.dic.get('distill_features') or []):
        where = f"{prefix}distill_features[{index}]"
        if not isinstance(item, dict):
            raise UserInputError(f"{where}: expected a mapping with student, teacher, loss")
        for key in item:
            if key not in FEATURE_TERM_KEYS:
                raise UserInputError(f"{where}: unknown key {key!r}"
                                     f"{closest(key, FEATURE_TERM_KEYS)}: valid keys are "
                                     f"{', '.join(FEATURE_TERM_KEYS)}")
        for key in ('student', 'teacher', 'loss'):
            if key not in item:
                raise UserInputError(f"{where}: missing key {key!r}")
        loss = _build_loss(item['loss'], f"{where}.loss", build_component)
        # How many layers per model the loss compares (FSPLoss: 2) decides the YAML form.
        per_model = getattr(loss, 'layers_per_model', 1)
        student_paths = _as_paths(item['student'], 'student', index)
        teacher_paths = _as_paths(item['teacher'], 'teacher', index)
        for role, paths in (('student', student_paths), ('teacher', teacher_paths)):
            if len(paths) != per_model:
                raise UserInputError(
                    f"{where}.{role}: {item['loss']['type']} compares {per_model} layer(s) per "
                    f"model, got {len(paths)}: give {'one dotted path' if per_model == 1 else f'a list of {per_model} paths'}")
        align = item.get('align', False)
        if align not in ('auto', True, False, None):
            raise UserInputError(f"{where}.align: expected auto, true or false, got {align!r}")
        start_iter = _number(item.get('start_iter', 0), f"{where}.start_iter", 0, integer=True)
        end_iter = item.get('end_iter')
        if end_iter is not None:
            _number(end_iter, f"{where}.end_iter", start_iter + 1, integer=True)
        terms.append(DistillTerm(
            name=item.get('name') or f"{item['loss']['type']}({student_paths[0]})",
            loss=loss, coef=_number(item.get('coef', 1.0), f"{where}.coef"),
            student_paths=student_paths, teacher_paths=teacher_paths,
            paired=per_model > 1, align=bool(align),
            start_iter=start_iter, end_iter=end_iter))
    return terms


def _probe_shapes(model, paths, input_shape, role):
    """Output shapes of the main logits and of each recorded path, from one dummy forward."""
    recorder = FeatureRecorder(model, paths, role)
    logits = dummy_forward(model, input_shape)
    records = recorder.pop()
    recorder.remove()
    return list(logits.shape), {p: list(t.shape) for p, t in records.items()}


def build_aligners(terms, student, teacher_model, input_shape, student_name, teacher_name):
    """Checks classes and channels with one dummy forward of each model; builds aligners."""
    student_paths = [p for t in terms for p in (t.student_paths or [])]
    teacher_paths = [p for t in terms for p in (t.teacher_paths or [])]
    s_logits, s_shapes = _probe_shapes(student, student_paths, input_shape, 'student')
    t_logits, t_shapes = _probe_shapes(teacher_model, teacher_paths, input_shape, 'teacher')
    if s_logits[1] != t_logits[1]:
        raise UserInputError(f"teacher ({teacher_name}) predicts {t_logits[1]} classes but the "
                             f"student ({student_name}) {s_logits[1]}: num_classes must match")
    aligners = {}
    for index, term in enumerate(terms):
        term.aligner_keys = []
        for pos, (s_path, t_path) in enumerate(zip(term.student_paths or [],
                                                   term.teacher_paths or [])):
            s_shape, t_shape = s_shapes[s_path], t_shapes[t_path]
            if len(s_shape) != 4 or len(t_shape) != 4:
                raise UserInputError(f"distill_features: {s_path} {s_shape} / {t_path} {t_shape}:"
                                     f" feature distillation needs NCHW outputs")
            key = None
            if s_shape[1] != t_shape[1]:
                if not term.align:
                    raise UserInputError(
                        f"distill_features: student {s_path} has {s_shape[1]} channels "
                        f"{s_shape}, teacher {t_path} has {t_shape[1]} {t_shape}: add "
                        f"`align: auto` or pick layers with equal channels")
                key = f"term{index}_{pos}"
                aligners[key] = ChannelAligner(s_shape[1], t_shape[1])
            term.aligner_keys.append(key)
    return aligners
