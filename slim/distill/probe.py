"""Shapes, from one dummy forward of each model: classes agree, each recorded tensor
exists and is a tensor, channels match or a connector maps them."""

import paddle

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.eval_mode import eval_mode
from slim.distill.connectors import build_connector
from slim.distill.recorder import Recorder, select

PROBE_INPUT_SHAPE = (1, 3, 128, 128)


def probe_input_shape(model):
    """PROBE_INPUT_SHAPE with the model's input channels: classifiers say theirs
    (`in_channels`); paddleseg's models take 3."""
    return (PROBE_INPUT_SHAPE[0], getattr(model, 'in_channels', 3), *PROBE_INPUT_SHAPE[2:])


def probe_shapes(model, refs, role, where):
    """(main logits shape, {ref: shape}) of `model` on zeros, BN statistics untouched;
    where[ref] names the config entry of each ref for error messages."""
    input_shape = probe_input_shape(model)
    recorder = Recorder(model, refs, role)
    try:
        with eval_mode(model), paddle.no_grad():
            logits, seen = recorder.record_layers(model, paddle.zeros(input_shape, 'float32'))
    finally:
        recorder.remove()
    shapes = {}
    for ref in recorder.refs:
        if (ref.path, ref.io) not in seen:
            raise UserInputError(
                f"{where[ref]}: layer {ref.path!r} did not run in the {role}'s "
                f'forward pass: pick a layer that does (--list_layers shows '
                f'the shapes of those that run)'
            )
        tensor = select(seen[(ref.path, ref.io)], ref, where[ref])
        if not isinstance(tensor, paddle.Tensor):
            raise UserInputError(
                f'{where[ref]}: {ref} is a {type(tensor).__name__}, not a '
                f'tensor: pick a layer (or index) that gives a tensor'
            )
        shapes[ref] = list(tensor.shape)
    return list(logits[0].shape), shapes


def _where(terms, side, config_path):
    """{ref: 'config: distill_features[i].side'} for the first term naming each ref."""
    where = {}
    features = [t for t in terms if t.student_refs is not None]
    for index, term in enumerate(features):
        for ref in getattr(term, f'{side}_refs'):
            where.setdefault(ref, f'{config_path}: distill_features[{index}].{side}')
    return where


def _check_term(term, student_shapes, config_path):
    """A loss over spatial positions (its class sets `needs_spatial`) gets NCHW tensors; a
    loss that cannot compare some channel counts says why (`channel_error`)."""
    loss_name = type(term.loss).__name__
    needs_spatial = getattr(term.loss, 'needs_spatial', False)
    channel_error = getattr(term.loss, 'channel_error', None)
    for shape in student_shapes:
        if needs_spatial and len(shape) != 4:
            raise UserInputError(
                f'{config_path}: {term.name}: {loss_name} compares spatial '
                f'maps [N, C, H, W], this term gives {shape}: compare [N, C] logits with '
                f'KLDivergenceLoss, DISTLoss or L2Loss, or pick a feature layer (--list_layers)'
            )
        problem = channel_error(shape[1]) if channel_error else None
        if problem:
            raise UserInputError(f'{config_path}: {term.name}: {loss_name} {problem}')


def connect(terms, student, teacher, student_name, teacher_name):
    """{key: connector} for the terms' student tensors whose channels need one; checks
    classes and channels. Keys are `term{i}_{position}`, as DistillModel looks them up."""
    student_refs = [r for t in terms for r in t.student_refs or []]
    teacher_refs = [r for t in terms for r in t.teacher_refs or []]
    s_logits, s_shapes = probe_shapes(
        student, student_refs, 'student', _where(terms, 'student', student_name)
    )
    t_logits, t_shapes = probe_shapes(
        teacher, teacher_refs, 'teacher', _where(terms, 'teacher', student_name)
    )
    if s_logits[1] != t_logits[1]:
        raise UserInputError(
            f'teacher ({teacher_name}) predicts {t_logits[1]} classes but the '
            f'student ({student_name}) {s_logits[1]}: num_classes must match'
        )
    for term in terms:
        _check_term(
            term,
            [s_logits]
            if term.student_refs is None
            else [s_shapes[ref] for ref in term.student_refs],
            student_name,
        )
    connectors = {}
    for index, term in enumerate(terms):
        pairs = zip(term.student_refs or [], term.teacher_refs or [])
        for position, (s_ref, t_ref) in enumerate(pairs):
            s_shape, t_shape = s_shapes[s_ref], t_shapes[t_ref]
            if term.connector is None or (term.connector == 'auto' and s_shape[1] == t_shape[1]):
                # A loss that compares pixels with pixels (e.g. affinities) says so.
                if s_shape[1] != t_shape[1] and not getattr(
                    term.loss, 'channels_may_differ', False
                ):
                    raise UserInputError(
                        f'distill_features: student {s_ref} has {s_shape[1]} channels '
                        f'{s_shape}, teacher {t_ref} has {t_shape[1]} {t_shape}: add '
                        f'`align: auto` or pick layers with equal channels'
                    )
                continue
            if len(s_shape) != 4:
                raise UserInputError(
                    f'distill_features: student {s_ref} {s_shape}: connectors map NCHW features'
                )
            try:
                connector = build_connector(term.connector, s_shape[1], t_shape[1])
            except TypeError as exc:
                raise UserInputError(
                    f'distill_features: connector {term.connector}: {exc}: check its arguments'
                ) from None
            connectors[f'term{index}_{position}'] = connector
    return connectors
