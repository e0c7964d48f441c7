"""What to record: typed references to sublayer outputs or inputs, taken by forward hooks.

The model's code is never edited to distill it (torchdistill's rule); a hook on
`backbone.stage2` keeps what that sublayer returned (or received) in the training step
(MMRazor's recorders). A reference to a layer that returns several tensors must say which
one: taking element 0 silently once recorded ResNet's first stage for `backbone`.
"""

import difflib
from dataclasses import dataclass
from typing import Optional

from paddleseg_ext.config_checks import check_known_keys
from paddleseg_ext.errors import UserInputError

REF_KEYS = ('path', 'io', 'index')


@dataclass(frozen=True)
class FeatureRef:
    """One tensor of a model: the output (or input) of the sublayer at dotted `path`;
    `index` picks one element when that is a list or tuple of tensors."""

    path: str
    io: str = 'output'
    index: Optional[int] = None

    def __str__(self):
        text = self.path if self.io == 'output' else f'{self.path}:input'
        return text if self.index is None else f'{text}[{self.index}]'

    @classmethod
    def parse(cls, value, where):
        """From YAML: a dotted path, or {path: ..., io: output|input, index: N}."""
        if isinstance(value, str) and value:
            return cls(value)
        if isinstance(value, dict):
            check_known_keys(value, REF_KEYS, where)
            if not isinstance(value.get('path'), str):
                raise UserInputError(
                    f'{where}: a layer reference is a dotted path or a mapping with keys '
                    f'{", ".join(REF_KEYS)} (path required), got {value!r}'
                )
            io = value.get('io', 'output')
            if io not in ('output', 'input'):
                raise UserInputError(f'{where}.io: expected output or input, got {io!r}')
            index = value.get('index')
            if index is not None and (
                isinstance(index, bool) or not isinstance(index, int) or index < 0
            ):
                raise UserInputError(f'{where}.index: expected an integer >= 0, got {index!r}')
            return cls(value['path'], io, index)
        raise UserInputError(
            f'{where}: expected a dotted layer path or {{path: ..., index: N}}, got {value!r}'
        )


def find_sublayer(model, path, role):
    """The sublayer at dotted `path`, or an error listing the closest valid paths."""
    sublayers = dict(model.named_sublayers())
    if path not in sublayers:
        near = difflib.get_close_matches(path, list(sublayers), n=5, cutoff=0.4)
        hint = f'closest: {", ".join(near)}' if near else 'see --list_layers'
        raise UserInputError(
            f'distill_features: {role} layer {path!r} does not exist in the '
            f'{role} model; {hint} (run with --list_layers to see all)'
        )
    return sublayers[path]


def select(value, ref, where):
    """The tensor `ref` names in what its layer returned (or received); `where` (the
    config entry or the model's role) starts any error message."""
    if isinstance(value, (list, tuple)):
        if ref.index is None:
            if len(value) == 1:
                return value[0]
            what = 'receives' if ref.io == 'input' else 'returns'
            raise UserInputError(
                f'{where}: layer {ref.path!r} {what} a list of {len(value)} tensors: pick one '
                f'with {{path: {ref.path}, index: N}}, N in 0..{len(value) - 1}'
            )
        if ref.index >= len(value):
            raise UserInputError(
                f'{where}: {ref}: index {ref.index} is out of range, the layer '
                f'gives {len(value)} tensors'
            )
        return value[ref.index]
    if ref.index is not None:
        raise UserInputError(
            f'{where}: {ref}: the layer gives one tensor, not a list: remove index'
        )
    return value


class Recorder:
    """Records, during one call of `record`, the tensor each FeatureRef names."""

    def __init__(self, model, refs, role):
        self.refs = list(dict.fromkeys(refs))  # unique, in order
        self.role = role
        self.enabled = False
        self._seen = {}  # (path, io) -> what the layer returned or received
        self._hooks = []
        for path, io in dict.fromkeys((ref.path, ref.io) for ref in self.refs):
            layer = find_sublayer(model, path, role)
            if io == 'input':
                hook = layer.register_forward_pre_hook(self._pre_hook(path))
            else:
                hook = layer.register_forward_post_hook(self._post_hook(path))
            self._hooks.append(hook)

    def _pre_hook(self, path):
        def hook(layer, inputs):
            if self.enabled:
                self._seen[(path, 'input')] = inputs

        return hook

    def _post_hook(self, path):
        def hook(layer, inputs, output):
            if self.enabled:
                self._seen[(path, 'output')] = output

        return hook

    def record_layers(self, forward, *args):
        """(forward(*args), {(path, io): what each hooked layer gave}), hooks on for that call."""
        self.enabled, self._seen = True, {}
        try:
            output = forward(*args)
        finally:
            self.enabled = False
        seen, self._seen = self._seen, {}
        return output, seen

    def record(self, forward, *args):
        """(forward(*args), {ref: tensor})."""
        output, seen = self.record_layers(forward, *args)
        return output, {
            ref: select(seen[(ref.path, ref.io)], ref, self.role)
            for ref in self.refs
            if (ref.path, ref.io) in seen
        }

    def remove(self):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
