"""The distillation model: one Layer that owns the student, its connectors, the recorder
and the built terms, and holds the frozen teacher outside its state.

Training: forward(batch, iteration) -> {term name: weighted loss}, the supervised loss
included, so the engine only sums, steps and saves. Evaluation: forward(images) -> the
student's logits. With no terms it is plain training of the student.
"""

import math

import numpy as np
import paddle
import paddle.nn as nn
from paddleseg.utils import logger

from slim.distill.calibration import AUTO, GRADIENT_RATIO, auto_coefficients
from slim.distill.recorder import Recorder


class TrainedBeside(nn.Layer):
    """What trains beside the student and is kept in the checkpoint's train state: the
    connectors, the terms' losses (a loss may have parameters) and the terms' coefficients
    (`coef: auto` ones are NaN until measured)."""

    def __init__(self, connectors, losses, coefs):
        super().__init__()
        self.connectors = nn.LayerDict(connectors or {})
        self.losses = nn.LayerList(losses)
        self.register_buffer(
            'coefs',
            paddle.to_tensor(
                [math.nan if coef == AUTO else float(coef) for coef in coefs] or [0.0],
                dtype='float32',
            ),
        )

    def set_state_dict(self, state_dict, *args, **kwargs):
        # Checkpoints written before the losses and coefficients joined the connectors held
        # the connectors' entries alone, at the top level.
        if state_dict and not any(
            k.startswith(('connectors.', 'losses.')) or k == 'coefs' for k in state_dict
        ):
            state_dict = {f'connectors.{k}': v for k, v in state_dict.items()}
        return super().set_state_dict(state_dict, *args, **kwargs)


class DistillModel(nn.Layer):
    """student + connectors (trained), terms (how to compare), teacher (frozen: a
    slim.distill.teacher.Teacher).

    The engine's contract (paddleseg_ext.engine.contract.TrainableModel): `deployable` is
    the Layer whose weights ship (best_model), and
    `auxiliary` holds what trains beside it but does not ship (saved in the checkpoint's
    train state); `find_unused_parameters` tells data parallelism that some parameters
    (connectors outside their term's window) may get no gradient in a step.

    auto_ratio: how hard the `coef: auto` terms pull together on their first batch, as a
    multiple of the supervised loss's gradient (slim.distill.calibration).
    """

    def __init__(
        self,
        student,
        supervised_loss,
        terms=(),
        connectors=None,
        teacher=None,
        auto_ratio=GRADIENT_RATIO,
    ):
        super().__init__()
        self.student = student
        self.supervised_loss = supervised_loss
        self.terms = list(terms)
        self.trained_beside = TrainedBeside(
            connectors, [t.loss for t in self.terms], [t.coef for t in self.terms]
        )
        # Until every auto coefficient is measured (or restored by a resume), each step
        # checks for those still unmeasured.
        self._auto_pending = any(t.coef == AUTO for t in self.terms)
        self.auto_ratio = auto_ratio
        self.recorder = Recorder(
            student, [r for t in self.terms for r in t.student_refs or []], 'student'
        )
        # A plain attribute, not a sublayer: the teacher never reaches parameters(),
        # state_dict(), the optimizer or DataParallel.
        self.teacher = teacher

    @property
    def deployable(self):
        return self.student

    @property
    def auxiliary(self):
        return self.trained_beside

    @property
    def find_unused_parameters(self):
        return len(self.trained_beside.parameters()) > 0

    def coefs(self):
        """{term name: its coefficient}, 'auto' for one not measured yet."""
        values = self.trained_beside.coefs.numpy()
        return {
            term.name: AUTO if math.isnan(value) else float(value)
            for term, value in zip(self.terms, values)
        }

    def run_info(self):
        """What the run log records about this model at the start."""
        if self.teacher is None:
            return {}
        return {**self.teacher.info(), 'coefs': self.coefs()}

    def forward(self, batch, iteration=None):
        if not self.training:
            return self.student(batch)
        images, label = batch['img'], batch['label']
        logits_list, student_records = self.recorder.record(self.student, images)
        losses = self.supervised_loss(logits_list, label)
        active = [(i, term) for i, term in enumerate(self.terms) if term.active(iteration)]
        if not active:
            return losses
        # Samples that carry their source map (a replay cache asked for it) hand it on.
        views = {key: batch[key] for key in ('index', 'source') if key in batch}
        teacher_logits, teacher_records = self.teacher(images, **views)
        term_losses = {}
        for index, term in active:
            if term.student_refs is None:
                student, teacher = [logits_list[0]], [teacher_logits]
            else:
                student = [
                    self._connect(index, position, student_records[ref])
                    for position, ref in enumerate(term.student_refs)
                ]
                teacher = [teacher_records[ref] for ref in term.teacher_refs]
            term_losses[index] = term(student, teacher, label)
        coefs = self.trained_beside.coefs
        if self._auto_pending:
            self._measure_coefs(paddle.add_n(list(losses.values())), term_losses)
        for index, loss in term_losses.items():
            losses[self.terms[index].name] = coefs[index] * loss
        return losses

    def _measure_coefs(self, supervised, term_losses):
        """Sets, from this batch's gradients, the coefficients of the active `coef: auto`
        terms not measured (nor restored by a resume) yet."""
        coefs = self.trained_beside.coefs.numpy()
        unmeasured = {i: loss for i, loss in term_losses.items() if math.isnan(coefs[i])}
        if unmeasured:
            parameters = [p for p in self.student.parameters() if not p.stop_gradient]
            ratio = self.auto_ratio / sum(term.coef == AUTO for term in self.terms)
            for index, coef in auto_coefficients(supervised, unmeasured, parameters, ratio).items():
                name = self.terms[index].name
                if coef is None:
                    # Nothing to balance: the term is likely dead (e.g. a softmax over one
                    # position); say so rather than train as if it pulled.
                    coef = 1.0
                    logger.warning(
                        f'coef auto: {name} gives the student no gradient on its first batch '
                        f'(its loss does not change with the student there), so it is set to 1 '
                        f'and may not train the student: check the layers and loss it compares'
                    )
                else:
                    logger.info(
                        f'coef auto: {name} = {coef:.4g} (its gradient '
                        f"{ratio:.3g} times the supervised loss's on its first batch)"
                    )
                coefs[index] = coef
            self.trained_beside.coefs.set_value(paddle.to_tensor(coefs))
        self._auto_pending = bool(np.isnan(coefs).any())

    def _connect(self, index, position, tensor):
        key = f'term{index}_{position}'
        connectors = self.trained_beside.connectors
        return connectors[key](tensor) if key in connectors else tensor
