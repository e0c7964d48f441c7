"""The one reader of .pdparams, .pdopt and .pdstates files: it unpickles only what
paddle.save writes (numpy arrays, paddle tensors as paddle reduces them, built-in
containers, strings and numbers), so a weights file cannot run code.

A pickle names the callables it wants called while it is read; this reader resolves only
the few that rebuild arrays and containers and refuses any other by name, before anything
is called. The result is what paddle.load returns for the same file (tensors in dygraph).
"""

import codecs
import collections
import hashlib
import io
import pickle

import numpy as np
from paddle.framework.io import _ndarray_to_tensor, _parse_load_result
from paddle.framework.io_utils import _pack_loaded_dict

from paddleseg_ext.errors import UserInputError

# paddle.save's name table of a state dict, and its slicing of arrays over 1 GiB
# (protocols 2 and 3), undone by _pack_loaded_dict.
_NAME_TABLE = 'StructuredToParameterName@@'


class RefusedWeights(UserInputError):
    """The file asks to call something a weights file never needs: it is not loaded."""


class DamagedWeights(UserInputError):
    """The file cannot be read as paddle.save output (truncated, overwritten, not a pickle)."""


def _lod_tensor_data(expression, namespace):
    """paddle.save reduces a LoDTensor to eval('data', {'data': array}); only that exact
    call is answered (with the array), no expression is ever evaluated."""
    if (
        expression == 'data'
        and isinstance(namespace, dict)
        and len(namespace) == 1
        and isinstance(namespace.get('data'), np.ndarray)
    ):
        return namespace['data']
    raise pickle.UnpicklingError(
        "builtins.eval with an expression other than paddle's LoDTensor reduction"
    )


def _latin1_bytes(text, encoding='latin1'):
    """Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); no other codec is run."""
    if isinstance(text, str) and codecs.lookup(encoding).name == 'iso8859-1':
        return text.encode('latin1')
    raise pickle.UnpicklingError(f'_codecs.encode with codec {encoding!r}')


def _allowed_globals():
    """{(module, name): the object it resolves to}. numpy's array and scalar rebuilders
    are taken from numpy's own reductions, under both module spellings (numpy.core in
    numpy 1, numpy._core in numpy 2), so files from either numpy load."""
    rebuild_array = np.zeros(1).__reduce__()[0]
    rebuild_scalar = np.float64(0).__reduce__()[0]
    allowed = {
        ('builtins', 'tuple'): tuple,
        ('builtins', 'list'): list,
        ('builtins', 'dict'): dict,
        ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset,
        ('builtins', 'bytearray'): bytearray,
        ('builtins', 'complex'): complex,
        ('builtins', 'eval'): _lod_tensor_data,
        ('_codecs', 'encode'): _latin1_bytes,
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
    }
    # Python 2 era pickles spell the builtins module __builtin__.
    allowed.update(
        {
            ('__builtin__', name): obj
            for (module, name), obj in list(allowed.items())
            if module == 'builtins'
        }
    )
    for package in ('numpy.core', 'numpy._core'):
        allowed[(f'{package}.multiarray', '_reconstruct')] = rebuild_array
        allowed[(f'{package}.multiarray', 'scalar')] = rebuild_scalar
    return allowed


_ALLOWED = _allowed_globals()


class _Refused(Exception):
    def __init__(self, wanted):
        super().__init__(wanted)
        self.wanted = wanted


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f'{module}.{name}')
        return found

    def persistent_load(self, pid):
        raise _Refused(f'a persistent object {pid!r}')


def unpickle(data, path):
    """The objects in `data` (a paddle.save file's bytes), before paddle's post-processing."""
    try:
        return _WeightsUnpickler(io.BytesIO(data), encoding='latin1').load()
    except _Refused as refused:
        raise RefusedWeights(
            f'{path}: refused to load: it asks to call {refused.wanted}, which a weights file '
            f'never needs (only arrays, numbers, strings and containers are loaded); use '
            f'weights from a source you trust, re-saved with paddle.save'
        ) from None
    except Exception as exc:  # truncated or foreign bytes fail in many ways inside pickle
        detail = ' '.join(str(exc).split()) or type(exc).__name__
        raise DamagedWeights(
            f'{path}: cannot be read as a paddle.save file ({detail}): it is truncated, '
            f'damaged or not a .pdparams/.pdopt/.pdstates file'
        ) from None


def load(path):
    """paddle.load(path) for .pdparams/.pdopt/.pdstates, without running code from the file.

    Raises RefusedWeights for a file asking for anything else, DamagedWeights for one that
    is missing or not readable."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise DamagedWeights(f'{path}: cannot be read ({exc.strerror}): check the path') from None
    obj = unpickle(data, path)
    # As paddle.load: a state dict saved with its name table gets tensors named as saved;
    # any other object gets its arrays (or paddle's (name, array) tensor tuples) as tensors.
    if isinstance(obj, dict):
        obj = _pack_loaded_dict(obj)
        if _NAME_TABLE in obj:
            for key, name in obj.pop(_NAME_TABLE).items():
                if isinstance(obj.get(key), np.ndarray):
                    obj[key] = _ndarray_to_tensor(obj[key], return_numpy=False)
                    obj[key].name = name
            return obj
    return _parse_load_result(obj, return_numpy=False)


def sha256(path):
    """The hex sha256 of a file, for provenance in logs."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
