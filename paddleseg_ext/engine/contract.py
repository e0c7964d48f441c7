"""What the engine asks of the model it trains, written as a Protocol: the loop relies on
nothing else, so any Layer that has these members trains (slim.distill.DistillModel is
one, with a teacher or without)."""

from typing import Any, Dict, Protocol, runtime_checkable

import paddle


@runtime_checkable
class TrainableModel(Protocol):
    """In training mode, `model(batch, iteration)` maps a batch ({'img', 'label'[, 'index',
    'source']}) and the iteration to the named losses the engine sums; in eval mode,
    `model(images)` returns the logits evaluation scores."""

    # The layer whose weights ship (best_model/model.pdparams, export).
    deployable: paddle.nn.Layer
    # Layers trained beside it and kept only in the checkpoint's train state.
    auxiliary: paddle.nn.Layer
    # Whether data parallelism must allow parameters without a gradient in a step.
    find_unused_parameters: bool

    def run_info(self) -> Dict[str, Any]:
        """What the run log records about the model; recorded again when it changes."""

    def __call__(self, *inputs: Any) -> Any: ...

    def train(self) -> None: ...

    def eval(self) -> None: ...
