"""paddleseg_ext/compat.py: paddleseg's CrossEntropyLoss (YAML `type: CrossEntropyLoss`) as
repaired for paddle 3, against a numpy reference; the program file names of either format."""

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager

from paddleseg_ext.compat import PROGRAM_SUFFIX, saved_program

IGNORE = 255


def reference_cross_entropy(logit, label, weight=None, top_k=1.0):
    """paddleseg's definition: mean of per-pixel NLL (times the label's class weight, 0 where
    ignored) over the mean of the pixels' weights (0 where ignored)."""
    scores = logit.transpose(0, 2, 3, 1).astype(np.float64)
    kept = label != IGNORE
    target = np.where(kept, label, 0)
    log_p = scores - scores.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    class_weight = np.ones(logit.shape[1]) if weight is None else np.asarray(weight)
    nll = -np.take_along_axis(log_p, target[..., None], -1)[..., 0] * class_weight[target] * kept
    coef = class_weight[target] if weight is not None else np.ones_like(nll)
    if top_k == 1.0:
        return nll.mean() / (kept * coef).mean()
    order = np.argsort(-nll.ravel())[: int(top_k * nll.size)]
    return nll.ravel()[order].mean() / coef.ravel()[order].mean()


@pytest.mark.parametrize(
    'options', [{}, {'weight': [1.0, 2.0, 0.5]}, {'top_k_percent_pixels': 0.5}]
)
def test_cross_entropy_matches_numpy(options):
    rng = np.random.default_rng(0)
    logit = rng.normal(size=(2, 3, 4, 5)).astype('float32')
    label = rng.integers(0, 3, size=(2, 4, 5))
    label[0, 0, :] = IGNORE
    loss = manager.LOSSES['CrossEntropyLoss'](**options)(
        paddle.to_tensor(logit), paddle.to_tensor(label)
    )
    expected = reference_cross_entropy(
        logit, label, options.get('weight'), options.get('top_k_percent_pixels', 1.0)
    )
    assert loss.dtype == paddle.float32
    assert abs(float(loss) - expected) <= 1e-5 * abs(expected)


def test_saved_program_finds_either_format(tmp_path):
    prefix = str(tmp_path / 'model')
    assert saved_program(prefix) is None
    (tmp_path / 'model.pdmodel').write_bytes(b'')
    assert saved_program(prefix) == prefix + '.pdmodel'
    (tmp_path / 'model.json').write_bytes(b'')
    assert saved_program(prefix) == prefix + PROGRAM_SUFFIX  # this paddle's own format first
