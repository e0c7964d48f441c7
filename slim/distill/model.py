"""The distillation model: one Layer that owns the student, its connectors, the recorder
and the built terms, and holds the frozen teacher outside its state.

Training: forward(batch, iteration) -> {term name: weighted loss}, the supervised loss
included, so the engine only sums, steps and saves. Evaluation: forward(images) -> the
student's logits. With no terms it is plain training of the student.
"""
import paddle.nn as nn

from slim.distill.recorder import Recorder


class DistillModel(nn.Layer):
    """student + connectors (trained), terms (how to compare), teacher (frozen).

    The engine's contract: `deployable` is the Layer whose weights ship (best_model), and
    `auxiliary` holds what trains beside it but does not ship (saved in the checkpoint's
    train state); `find_unused_parameters` tells data parallelism that some parameters
    (connectors outside their term's window) may get no gradient in a step.
    """

    def __init__(self, student, supervised_loss, terms=(), connectors=None, teacher=None):
        super().__init__()
        self.student = student
        self.connectors = nn.LayerDict(connectors or {})
        self.supervised_loss = supervised_loss
        self.terms = list(terms)
        self.recorder = Recorder(student, [r for t in self.terms for r in t.student_refs or []],
                                 'student')
        # A plain attribute, not a sublayer: the teacher never reaches parameters(),
        # state_dict(), the optimizer or DataParallel.
        self.teacher = teacher

    @property
    def deployable(self):
        return self.student

    @property
    def auxiliary(self):
        return self.connectors

    @property
    def find_unused_parameters(self):
        return len(self.connectors) > 0

    def run_info(self):
        """What the run log records about this model at the start."""
        return {} if self.teacher is None else self.teacher.info()

    def forward(self, batch, iteration=None):
        if not self.training:
            return self.student(batch)
        images, label = batch['img'], batch['label']
        logits_list, student_records = self.recorder.record(self.student, images)
        losses = self.supervised_loss(logits_list, label)
        active = [(i, term) for i, term in enumerate(self.terms) if term.active(iteration)]
        if not active:
            return losses
        teacher_logits, teacher_records = self.teacher(images)
        for index, term in active:
            if term.student_refs is None:
                student, teacher = [logits_list[0]], [teacher_logits]
            else:
                student = [self._connect(index, position, student_records[ref])
                           for position, ref in enumerate(term.student_refs)]
                teacher = [teacher_records[ref] for ref in term.teacher_refs]
            losses[term.name] = term(student, teacher, label)
        return losses

    def _connect(self, index, position, tensor):
        key = f'term{index}_{position}'
        return self.connectors[key](tensor) if key in self.connectors else tensor
