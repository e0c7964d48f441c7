"""Reading YAML configs that a stranger may have written: plain data only, bounded, with
`_base_` inheritance resolved here (paddleseg's semantics, without its loader).

- Plain data: PyYAML's safe loader, so no tag builds a Python object (`!!python/name`,
  `!!python/object/apply` and the like are refused as invalid YAML).
- Bounded: a config file is a regular file of at most MAX_CONFIG_BYTES, valid UTF-8; its
  nesting is at most MAX_DEPTH deep and, with every alias expanded, it has at most
  MAX_NODES nodes (an anchor bomb is refused before anything walks it).
- `_base_`: a path (or a list of paths) relative to the config's folder; the child's keys
  are merged recursively over the base's, and a mapping with `_inherited_: false` replaces
  the base's instead. A config that includes itself, directly or not, is refused.
- Strings that paddleseg passes to `eval` (EVALUATED_KEYS) must be one of the names that
  key may take (check_evaluated_strings, once --opts are applied); any other value is
  refused naming the key.
"""

import os

import paddle
import yaml

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.files import NotAFile, read_regular_file

MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 100_000
MAX_BASES = 16
BASE_KEY = '_base_'
INHERIT_KEY = '_inherited_'


def _norm_layers():
    return sorted(
        f'nn.{name}'
        for name in dir(paddle.nn)
        if 'Norm' in name
        and isinstance(getattr(paddle.nn, name), type)
        and issubclass(getattr(paddle.nn, name), paddle.nn.Layer)
    )


# {key: the values allowed}: paddleseg 2.8.0 evaluates these config strings with `eval`
# (its ViT and CAE backbones: eval(norm_layer), in a module where `nn` is paddle.nn).
# Every other `eval` in paddleseg 2.8.0 checks its argument against a module's names first.
EVALUATED_KEYS = {'norm_layer': _norm_layers()}


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than MAX_DEPTH while it composes."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f'nested deeper than {MAX_DEPTH} levels')
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_expansion(root):
    """Counts the nodes with every alias expanded (each shared node counted once per
    reference, computed once per node); refuses cycles, depth and count over the limits."""
    sizes = {}  # id(node) -> (nodes below and including it, its height)
    open_nodes = set()

    def visit(node, depth):
        if depth > MAX_DEPTH:
            raise yaml.YAMLError(f'nested deeper than {MAX_DEPTH} levels once aliases expand')
        key = id(node)
        if key in open_nodes:
            raise yaml.YAMLError('an alias refers to a node that contains it')
        if key not in sizes:
            open_nodes.add(key)
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            count, height = 1, 0
            for child in children:
                child_count, child_height = visit(child, depth + 1)
                count += child_count
                height = max(height, child_height + 1)
                if count > MAX_NODES:
                    raise yaml.YAMLError(
                        f'more than {MAX_NODES} nodes once aliases expand (an anchor bomb?)'
                    )
            open_nodes.discard(key)
            sizes[key] = count, height
        count, height = sizes[key]
        if depth + height > MAX_DEPTH:
            raise yaml.YAMLError(f'nested deeper than {MAX_DEPTH} levels once aliases expand')
        return count, height

    visit(root, 0)


def read_yaml(path):
    """The data of one YAML file (None for an empty one); one line for every problem."""
    try:
        data = read_regular_file(
            path, MAX_CONFIG_BYTES, 'a config this large is not a config: check the file'
        )
    except NotAFile as exc:
        raise UserInputError(str(exc)) from None
    except OSError as exc:
        raise UserInputError(f"config file '{path}' cannot be read ({exc.strerror})") from None
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f'{path}: is not UTF-8 text (byte {exc.start}): save the config as UTF-8'
        ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' at line {mark.line + 1}' if mark else ''
        problem = getattr(exc, 'problem', None) or exc
        raise UserInputError(f'{path}: invalid YAML{where}: {problem}') from None
    except (ValueError, TypeError) as exc:  # a value the safe constructor cannot build
        raise UserInputError(f'{path}: invalid YAML value: {" ".join(str(exc).split())}') from None
    finally:
        loader.dispose()


def _merge(child, base):
    """paddleseg's merge: the child's keys recursively over the base's."""
    if not child.get(INHERIT_KEY, True):
        return {key: value for key, value in child.items() if key != INHERIT_KEY}
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(value, merged[key])
        else:
            merged[key] = value
    return merged


def _base_paths(dic, path):
    bases = dic.pop(BASE_KEY)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise UserInputError(
            f'{path}: _base_ is {bases!r:.80}: it must be a path (or a list of paths) to a '
            f"YAML file, relative to the config's folder"
        )
    return [os.path.join(os.path.dirname(path), base) for base in bases]


def load_config_dict(path, _including=()):
    """The config at `path` with its `_base_` files merged in (None for an empty file)."""
    real = os.path.realpath(path)
    if real in _including:
        chain = ' -> '.join([*_including, real])
        raise UserInputError(f'{path}: _base_ includes itself ({chain}): remove the loop')
    if len(_including) > MAX_BASES:
        raise UserInputError(f'{path}: more than {MAX_BASES} levels of _base_')
    dic = read_yaml(path)
    if not isinstance(dic, dict) or BASE_KEY not in dic:
        return dic
    for base_path in _base_paths(dic, path):
        if not os.path.exists(base_path):
            raise UserInputError(
                f"{path}: _base_ file '{base_path}' does not exist: fix the _base_ path "
                f"(it is relative to the config's folder)"
            )
        if os.path.isdir(base_path):
            raise UserInputError(
                f"{path}: _base_ '{base_path}' is a folder: name the YAML file in it"
            )
        base = load_config_dict(base_path, (*_including, real))
        if not isinstance(base, dict):
            raise UserInputError(f'{base_path}: a _base_ file must be a mapping of keys')
        dic = _merge(dic, base)
    return dic


def check_evaluated_strings(node, path, where=''):
    """Every EVALUATED_KEYS value in the config is one of its allowed names."""
    if isinstance(node, dict):
        for key, value in node.items():
            name = f'{where}.{key}' if where else str(key)
            allowed = EVALUATED_KEYS.get(key)
            if allowed is not None and value not in allowed:
                raise UserInputError(
                    f'{path}: {name}: {value!r:.80} is not allowed (PaddleSeg evaluates it as '
                    f'code): use one of {", ".join(allowed)}'
                )
            check_evaluated_strings(value, path, name)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            check_evaluated_strings(item, path, f'{where}[{i}]')
