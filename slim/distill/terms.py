"""How to compare: a distillation term, and the binding of its tensors to a loss by name.

A loss says what it takes through its forward signature (MMRazor's loss mappings, read
from the code instead of written in the config): the arguments named `student`,
`teacher` and `label` receive the term's tensors. A loss that compares several layers per
model annotates it, e.g. FSP's `student: Tuple[paddle.Tensor, paddle.Tensor]`.
"""

import collections.abc
import inspect
import typing
from dataclasses import dataclass
from typing import List, Optional

import paddle.nn as nn

from paddleseg_ext.errors import UserInputError
from slim.distill.recorder import FeatureRef

TERM_INPUTS = ('student', 'teacher', 'label')
# PaddleSeg's own distillation loss (KLLoss) names its inputs logit_1 (the student's) and
# logit_2 (the teacher's), the order its distillation script passes them in.
PADDLESEG_INPUTS = {'logit_1': 'student', 'logit_2': 'teacher'}
_SEQUENCES = (list, tuple, collections.abc.Sequence)


@dataclass(frozen=True)
class LossArguments:
    """The term inputs a loss's forward accepts, and how many tensors per model it compares:
    None for one tensor, N for a tuple of N, 0 for a list of any length. parameters: the
    forward's parameter name for each of `names` (the same name but for PaddleSeg's)."""

    names: tuple
    tensors_per_model: Optional[int] = None
    parameters: Optional[tuple] = None

    @classmethod
    def of(cls, loss_class, where):
        forward = loss_class.forward
        params = list(inspect.signature(forward).parameters.values())[1:]  # without self
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        input_of = {p.name: PADDLESEG_INPUTS.get(p.name, p.name) for p in named}
        for param in named:
            if input_of[param.name] not in TERM_INPUTS and param.default is param.empty:
                raise UserInputError(
                    f'{where}: {loss_class.__name__} takes {param.name!r}, which a '
                    f'distillation term cannot give (it gives {", ".join(TERM_INPUTS)}): use '
                    f'a distillation loss, e.g. KLDivergenceLoss or ChannelWiseDistillLoss'
                )
        parameter_of = {term_input: name for name, term_input in input_of.items()}
        names = tuple(name for name in TERM_INPUTS if accepts_any or name in parameter_of)
        if 'student' not in names or 'teacher' not in names:
            raise UserInputError(
                f'{where}: {loss_class.__name__} does not take both `student` and `teacher` '
                f'arguments: it is not a distillation loss (try KLDivergenceLoss or '
                f'ChannelWiseDistillLoss)'
            )
        parameters = tuple(parameter_of.get(name, name) for name in names)
        return cls(names, _tensors_per_model(forward), None if parameters == names else parameters)

    def bind(self, given):
        """The forward's keyword arguments from {term input: tensor}."""
        return {
            parameter: given[name]
            for name, parameter in zip(self.names, self.parameters or self.names)
        }


def _tensors_per_model(forward):
    """From the `student` annotation: None (a tensor), N (Tuple of N), 0 (any sequence)."""
    try:
        hint = typing.get_type_hints(forward).get('student')
    except (NameError, TypeError):
        return None
    origin = typing.get_origin(hint)
    if origin is None or not issubclass(origin, _SEQUENCES):
        return None
    args = typing.get_args(hint)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return len(args)
    return 0


@dataclass(frozen=True)
class DistillTerm:
    """loss(student, teacher[, label]), weighted by coef, for iterations start_iter+1 ..
    end_iter. coef: a number, or 'auto' (slim.distill.calibration).

    student_refs / teacher_refs name the recorded tensors compared; None compares the two
    models' main logits. connector: None, 'auto' (a 1x1 conv + BN where channels differ) or
    a connector config {type: ..., ...} applied to each student tensor.
    """

    name: str
    loss: nn.Layer
    coef: object
    arguments: LossArguments
    student_refs: Optional[List[FeatureRef]] = None
    teacher_refs: Optional[List[FeatureRef]] = None
    connector: Optional[object] = None
    start_iter: int = 0
    end_iter: Optional[int] = None

    def active(self, iteration):
        return iteration > self.start_iter and (self.end_iter is None or iteration <= self.end_iter)

    def __call__(self, student, teacher, label):
        """The unweighted loss; student and teacher are lists of tensors (one per ref)."""
        if self.arguments.tensors_per_model is None:
            student, teacher = student[0], teacher[0]
        return self.loss(
            **self.arguments.bind({'student': student, 'teacher': teacher, 'label': label})
        )
