"""The student config's `distill_loss` and `distill_features`, read into DistillTerms.

Everything a term needs is checked here, when the config is read: keys, numbers, the loss
type and its arguments, the layer references, and that the loss's signature fits what the
term gives it. Shapes are checked later, against the built models (slim.distill.probe).
"""

import math

from paddleseg.cvlibs import manager
from paddleseg.utils import logger

from paddleseg_ext.config_checks import check_known_keys
from paddleseg_ext.errors import UserInputError
from slim.distill.calibration import AUTO, GRADIENT_RATIO
from slim.distill.connectors import CONNECTORS
from slim.distill.recorder import FeatureRef
from slim.distill.terms import DistillTerm, LossArguments

FEATURE_TERM_KEYS = (
    'student',
    'teacher',
    'loss',
    'coef',
    'align',
    'connector',
    'start_iter',
    'end_iter',
    'name',
)


def _number(value, key, minimum=None, integer=False):
    kinds = int if integer else (int, float)
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, kinds)
        or (isinstance(value, float) and not math.isfinite(value))
        or (minimum is not None and value < minimum)
    ):
        raise UserInputError(
            f'{key}: expected {"an integer" if integer else "a number"}'
            f'{"" if minimum is None else f" >= {minimum}"}, got {value!r}'
        )
    return value


def _coef(value, key):
    """A term's coefficient: a number >= 0, or 'auto' (set from gradients at the start)."""
    if value == AUTO:
        return AUTO
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise UserInputError(
            f'{key}: {value} is negative, which would push the student away '
            f'from the teacher: give a number >= 0 or auto'
        )
    try:
        return _number(value, key, 0)
    except UserInputError:
        raise UserInputError(f'{key}: expected a number >= 0 or auto, got {value!r}') from None


def _loss(loss_cfg, where, build_component):
    """(built loss, its LossArguments) from {type: ..., args}."""
    if not isinstance(loss_cfg, dict) or 'type' not in loss_cfg:
        raise UserInputError(
            f'{where}: expected a mapping with `type:`, e.g. '
            f'{{type: ChannelWiseDistillLoss, tau: 4}}, got {loss_cfg!r}'
        )
    losses = manager.LOSSES.components_dict
    if loss_cfg['type'] not in losses:
        raise UserInputError(
            f'{where}: unknown type {loss_cfg["type"]!r}: registered losses: '
            f'{", ".join(sorted(losses))}'
        )
    arguments = LossArguments.of(losses[loss_cfg['type']], where)
    try:
        loss = build_component(loss_cfg)
    except Exception as exc:
        message = ' '.join(str(exc).split()).split('The error message is: ')[-1]
        raise UserInputError(
            f'{where}: cannot build {loss_cfg["type"]}: {message}: check its arguments'
        ) from None
    return loss, arguments


def _refs(value, where, arguments, loss_type):
    """The FeatureRefs of one model's side, in the form the loss's signature asks for."""
    per_model = arguments.tensors_per_model
    if per_model is None:
        if isinstance(value, list):
            raise UserInputError(
                f'{where}: {loss_type} compares one tensor per model: give one '
                f'layer reference, not a list'
            )
        return [FeatureRef.parse(value, where)]
    if not isinstance(value, list) or not value or (per_model and len(value) != per_model):
        count = f'{per_model}' if per_model else 'one or more'
        raise UserInputError(
            f'{where}: {loss_type} compares {count} layers per model: give a '
            f'list of {count} layer references, got {value!r}'
        )
    return [FeatureRef.parse(item, f'{where}[{i}]') for i, item in enumerate(value)]


def _connector(item, where):
    """None, 'auto' (align: auto|true) or a registered connector's config."""
    align, connector = item.get('align', False), item.get('connector')
    if align not in ('auto', True, False, None):
        raise UserInputError(f'{where}.align: expected auto, true or false, got {align!r}')
    if connector is None:
        return 'auto' if align else None
    if align:
        raise UserInputError(
            f'{where}: give `align: auto` or `connector:`, not both '
            f'(align: auto is the shorthand for a 1x1 conv + BN connector)'
        )
    if not isinstance(connector, dict) or connector.get('type') not in CONNECTORS.components_dict:
        raise UserInputError(
            f'{where}.connector: expected {{type: T}} with T one of '
            f'{", ".join(sorted(CONNECTORS.components_dict))}, got {connector!r}'
        )
    return dict(connector)


def _unique(name, taken):
    """name, or name#2, name#3 ... so every loss term logs under its own name."""
    unique, count = name, 1
    while unique in taken:
        count += 1
        unique = f'{name}#{count}'
    taken.add(unique)
    return unique


def _logit_terms(distill_loss, prefix, build_component, taken):
    types, coefs = distill_loss.get('types', []), distill_loss.get('coef', [])
    if not isinstance(types, list) or not isinstance(coefs, list) or len(types) != len(coefs):
        raise UserInputError(
            f'{prefix}distill_loss: expected lists `types` and `coef` of '
            f'equal length, got {len(types)} types and {len(coefs)} coef'
        )
    terms = []
    for index, (loss_cfg, coef) in enumerate(zip(types, coefs)):
        where = f'{prefix}distill_loss.types[{index}]'
        loss, arguments = _loss(loss_cfg, where, build_component)
        if arguments.tensors_per_model is not None:
            raise UserInputError(
                f'{where}: {loss_cfg["type"]} compares several layers per '
                f'model: use it in distill_features'
            )
        terms.append(
            DistillTerm(
                name=_unique(f'{loss_cfg["type"]}(logits)', taken),
                loss=loss,
                coef=_coef(coef, f'{prefix}distill_loss.coef[{index}]'),
                arguments=arguments,
            )
        )
    return terms


def _feature_term(item, where, build_component, taken):
    if not isinstance(item, dict):
        raise UserInputError(f'{where}: expected a mapping with student, teacher, loss')
    check_known_keys(item, FEATURE_TERM_KEYS, where)
    for key in ('student', 'teacher', 'loss'):
        if key not in item:
            raise UserInputError(f'{where}: missing key {key!r}')
    loss, arguments = _loss(item['loss'], f'{where}.loss', build_component)
    loss_type = item['loss']['type']
    student_refs = _refs(item['student'], f'{where}.student', arguments, loss_type)
    teacher_refs = _refs(item['teacher'], f'{where}.teacher', arguments, loss_type)
    if len(student_refs) != len(teacher_refs):
        raise UserInputError(
            f'{where}: {len(student_refs)} student and {len(teacher_refs)} '
            f'teacher layers: give as many of each'
        )
    start_iter = _number(item.get('start_iter', 0), f'{where}.start_iter', 0, integer=True)
    end_iter = item.get('end_iter')
    if end_iter is not None:
        _number(end_iter, f'{where}.end_iter', start_iter + 1, integer=True)
    name = item.get('name') or f'{loss_type}({student_refs[0]})'
    return DistillTerm(
        name=_unique(name, taken),
        loss=loss,
        coef=_coef(item.get('coef', 1.0), f'{where}.coef'),
        arguments=arguments,
        student_refs=student_refs,
        teacher_refs=teacher_refs,
        connector=_connector(item, where),
        start_iter=start_iter,
        end_iter=end_iter,
    )


def parse_terms(config, build_component, config_path=''):
    """DistillTerms from the student config's `distill_loss` and `distill_features`."""
    prefix = f'{config_path}: ' if config_path else ''
    taken = set()
    terms = []
    # `distill_loss: null` (e.g. to drop a base config's logit terms) means none.
    logit_terms = config.dic.get('distill_loss') or {}
    if not isinstance(logit_terms, dict):
        raise UserInputError(
            f'{prefix}distill_loss: expected a mapping with `types` and `coef`, got {logit_terms!r}'
        )
    if logit_terms:
        terms += _logit_terms(dict(logit_terms), prefix, build_component, taken)
    features = config.dic.get('distill_features') or []
    if not isinstance(features, list):
        raise UserInputError(
            f'{prefix}distill_features: expected a list of terms, got {features!r}'
        )
    for index, item in enumerate(features):
        terms.append(
            _feature_term(item, f'{prefix}distill_features[{index}]', build_component, taken)
        )
    iters = config.dic.get('iters')
    for term in terms:
        if isinstance(iters, int) and term.start_iter >= iters:
            raise UserInputError(
                f'{prefix}{term.name}: start_iter {term.start_iter} is not '
                f"below the run's {iters} iterations, so it would never "
                f'train: lower start_iter or raise --iters'
            )
    return terms


def parse_auto_ratio(config, terms, config_path=''):
    """`distill_auto_ratio`: how hard the `coef: auto` terms pull together, as a multiple of
    the supervised loss's gradient on their first batch (slim.distill.calibration);
    GRADIENT_RATIO when absent."""
    prefix = f'{config_path}: ' if config_path else ''
    value = config.dic.get('distill_auto_ratio')
    if value is None:
        return GRADIENT_RATIO
    try:
        positive = _number(value, 'distill_auto_ratio', 0) > 0
    except UserInputError:
        positive = False
    if not positive:
        raise UserInputError(
            f"{prefix}distill_auto_ratio: expected a number > 0 (the auto terms' pull as a "
            f"multiple of the labels'; default {GRADIENT_RATIO}), got {value!r}"
        )
    if not any(term.coef == AUTO for term in terms):
        logger.warning(
            f'{prefix}distill_auto_ratio is set but no term has coef: auto, so it changes nothing'
        )
    return float(value)
