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
import math
import pickle
import pickletools

import numpy as np
from paddle.framework.io import _ndarray_to_tensor, _parse_load_result
from paddle.framework.io_utils import _pack_loaded_dict

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.files import MAX_BYTES_ENV, NotAFile, max_bytes, read_regular_file

# paddle.save's name table of a state dict, and its slicing of arrays over 1 GiB
# (protocols 2 and 3), undone by _pack_loaded_dict.
_NAME_TABLE = 'StructuredToParameterName@@'
# The numeric dtypes an array may have (numpy's own spelling in its dtype reduction), and
# the state numpy writes for each of them: no object, string, void, record or subarray type.
_DTYPES = frozenset('b1 i1 u1 i2 u2 i4 u4 i8 u8 f2 f4 f8 c8 c16'.split())
_DTYPE_ORDERS = ('<', '>', '|', '=')
# How deep containers may nest (paddle's post-processing recurses), how many objects a file
# may reach per pickle opcode (references to one container counted each time), and what a
# file may ask to allocate (arrays, counted per reference, and buffers) per byte of its
# own, plus a fixed slack: protocol 2 writes an array's bytes as latin1 text that is
# decoded into a buffer and then into the array, two allocations of its size.
MAX_DEPTH = 64
_OBJECTS_PER_OPCODE = 4
_BYTES_PER_FILE_BYTE = 2
_SLACK_BYTES = 16 << 20
_MEMO_OPCODES = ('PUT', 'BINPUT', 'LONG_BINPUT')
_SCALAR_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None))


class RefusedWeights(UserInputError):
    """The file asks for something paddle.save never writes: it is not loaded."""


class DamagedWeights(UserInputError):
    """The file cannot be read as paddle.save output (truncated, overwritten, not a pickle)."""


class _Refused(Exception):
    """Raised inside unpickling: `wanted` is what the file asked to call, or `what` says
    which structure paddle.save never writes."""

    def __init__(self, wanted=None, what=None):
        super().__init__(wanted or what)
        self.wanted = wanted
        self.what = what


def _refuse(what):
    return _Refused(what=what)


class _NDArrayClass:
    """What `numpy.ndarray` resolves to: accepted only as _reconstruct's first argument,
    never called (ndarray(shape, dtype, buffer, offset, strides) reads any memory)."""

    def __call__(self, *args, **kwargs):
        raise _Refused('numpy.ndarray')


_NDARRAY = _NDArrayClass()


class _DType:
    """numpy.dtype(name, align, copy) of a numeric name; its BUILD state is checked to be
    the one numpy writes for that name before the real dtype is made."""

    def __init__(self, name):
        if not isinstance(name, str) or name not in _DTYPES:
            raise _refuse(f'an array of dtype {name!r} (only numeric dtypes are loaded)')
        self.name = name
        self.dtype = None

    def __setstate__(self, state):
        if (
            self.dtype is not None
            or not isinstance(state, tuple)
            or len(state) != 8
            or state[0] != 3
            or state[1] not in _DTYPE_ORDERS
            or state[2:] != (None, None, None, -1, -1, 0)
        ):
            raise _refuse(f'dtype {self.name!r} with the state {state!r:.60}')
        self.dtype = np.dtype(self.name).newbyteorder(state[1])


def _checked_dtype(dtype):
    if not isinstance(dtype, _DType) or dtype.dtype is None:
        raise _refuse(f'an array or scalar whose dtype is {type(dtype).__name__}')
    return dtype.dtype


def _raw_bytes(data):
    """Array and scalar data: bytes (protocol 3+), or protocol 2 text read as latin1."""
    if isinstance(data, str):
        return data.encode('latin1')
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise _refuse(f'array data of type {type(data).__name__}')


class _Unpickler(pickle.Unpickler):
    """Resolves only the callables paddle.save's output needs, each a checked stand-in;
    counts the bytes the file asks to allocate against its budget."""

    def __init__(self, data, budget):
        super().__init__(io.BytesIO(data), encoding='latin1')
        self.budget = budget
        self.asked = 0
        builtins = {
            'tuple': self._container(tuple),
            'list': self._container(list),
            'dict': self._container(dict),
            'set': self._container(set),
            'frozenset': self._container(frozenset),
            'bytearray': self._bytearray,
            'complex': self._complex,
            'eval': self._lod_tensor_data,
        }
        self.allowed = {('collections', 'OrderedDict'): self._container(collections.OrderedDict)}
        # Python 2 era pickles spell the builtins module __builtin__.
        for module in ('builtins', '__builtin__'):
            self.allowed.update({(module, name): obj for name, obj in builtins.items()})
        self.allowed.update(
            {
                ('_codecs', 'encode'): self._latin1_bytes,
                ('numpy', 'ndarray'): _NDARRAY,
                ('numpy', 'dtype'): self._dtype,
            }
        )
        # numpy 1 writes numpy.core.multiarray, numpy 2 numpy._core.multiarray.
        for package in ('numpy.core', 'numpy._core'):
            self.allowed[(f'{package}.multiarray', '_reconstruct')] = self._reconstruct
            self.allowed[(f'{package}.multiarray', 'scalar')] = self._scalar

    def find_class(self, module, name):
        found = self.allowed.get((module, name))
        if found is None:
            raise _Refused(f'{module}.{name}')
        return found

    def persistent_load(self, pid):
        raise _Refused(f'a persistent object {pid!r}')

    def charge(self, nbytes):
        self.asked += nbytes
        if self.asked > self.budget:
            raise _refuse(
                f'more memory than its size accounts for (over {self.budget} bytes asked; '
                f'an object referenced many times, or a buffer of a declared size)'
            )

    def _container(self, kind):
        def build(*args):
            if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
                raise _refuse(f'{kind.__name__} built from {args!r:.60}')
            self.charge(8 * len(args[0]) if args else 0)
            return kind(*args)

        return build

    def _bytearray(self, data=b'', encoding=None):
        """Protocols 2 and 3 write a bytearray from its bytes (or latin1 text), never a size."""
        if not isinstance(data, (bytes, str)) or (
            isinstance(data, str) and encoding not in ('latin-1', 'latin1')
        ):
            raise _refuse(f'bytearray built from {type(data).__name__}')
        self.charge(len(data))
        return bytearray(_raw_bytes(data))

    def _latin1_bytes(self, text, encoding='latin1'):
        """Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); no other codec is run."""
        if not (isinstance(text, str) and isinstance(encoding, str)) or (
            codecs.lookup(encoding).name != 'iso8859-1'
        ):
            raise _Refused(f'_codecs.encode with codec {encoding!r}')
        self.charge(len(text))
        return text.encode('latin1')

    def _reconstruct(self, subtype, shape, code):
        """numpy's ndarray reduction: an empty array, its contents set by BUILD."""
        if subtype is not _NDARRAY or shape != (0,) or code not in (b'b', 'b'):
            raise _refuse('numpy._reconstruct with arguments numpy never writes')
        return _ArrayState(self)

    def _scalar(self, dtype, data):
        dtype = _checked_dtype(dtype)
        data = _raw_bytes(data)
        if len(data) != dtype.itemsize:
            raise _refuse(f'a {dtype} scalar of {len(data)} bytes')
        return np.frombuffer(data, dtype=dtype)[0]

    def _dtype(self, name, align=False, copy=True):
        return _DType(name)

    def _complex(self, real=0.0, imag=0.0):
        if not all(type(part) in (int, float) for part in (real, imag)):
            raise _refuse('complex built from something else than two numbers')
        return complex(real, imag)

    def _lod_tensor_data(self, expression, namespace):
        """paddle.save reduces a LoDTensor to eval('data', {'data': array}); only that
        exact call is answered (with the array), no expression is ever evaluated."""
        if (
            expression == 'data'
            and type(namespace) is dict
            and len(namespace) == 1
            and isinstance(namespace.get('data'), _ArrayState)
        ):
            return namespace['data']
        raise _Refused(f'builtins.eval of {expression!r:.60}')


class _ArrayState:
    """An array being unpickled: numpy's state (version, shape, dtype, Fortran order, raw
    bytes) arrives by BUILD; it is checked (numeric dtype, shape, byte count) and the array
    made from a copy of the bytes, never from numpy's own __setstate__."""

    def __init__(self, unpickler):
        self.unpickler = unpickler
        self.array = None

    def __setstate__(self, state):
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise _refuse('an array state numpy never writes')
        version, shape, dtype, fortran, data = state
        if (
            version != 1
            or not isinstance(shape, tuple)
            or len(shape) > 32
            or not all(type(n) is int and n >= 0 for n in shape)
            or type(fortran) is not bool
        ):
            raise _refuse(f'an array of shape {shape!r:.60}')
        dtype = _checked_dtype(dtype)
        data = _raw_bytes(data)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != len(data):
            raise _refuse(f'an array of shape {shape} {dtype} ({nbytes} bytes) from {len(data)}')
        self.unpickler.charge(nbytes)
        order = 'F' if fortran else 'C'
        self.array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order)


def _prescan(data):
    """The number of opcodes, after checking what the C unpickler would allocate before
    reading: every declared length is within the file and every memo index is one that
    a pickle of this many opcodes writes."""
    count = 0
    for opcode, arg, _ in pickletools.genops(data):
        count += 1
        if opcode.name in _MEMO_OPCODES and arg >= count:
            raise _refuse(f'a memo index of {arg} in a pickle of {count} opcodes')
    return count


class _Converter:
    """The unpickled objects with the arrays in place, after checking the structure: only
    containers, numbers, strings, numeric arrays and scalars; bounded depth, no cycles;
    every further reference to an array charged again, as paddle makes a tensor of each."""

    def __init__(self, unpickler, max_objects):
        self.unpickler = unpickler
        self.objects = max_objects
        self.path = set()
        self.arrays_seen = set()

    def __call__(self, obj, depth=0):
        self.objects -= 1
        if self.objects < 0:
            raise _refuse('more objects than a file of its size holds (shared references)')
        if depth > MAX_DEPTH:
            raise _refuse(f'containers nested deeper than {MAX_DEPTH}')
        if isinstance(obj, _ArrayState):
            if obj.array is None:
                raise _refuse('an array without contents')
            if id(obj) in self.arrays_seen:  # its first copy was charged when it was built
                self.unpickler.charge(obj.array.nbytes)
            self.arrays_seen.add(id(obj))
            return obj.array
        if isinstance(obj, _DType):
            return _checked_dtype(obj)
        if type(obj) in _SCALAR_TYPES or (
            isinstance(obj, np.generic) and obj.dtype.str[1:] in _DTYPES
        ):
            return obj
        kind = type(obj)
        if kind not in (dict, collections.OrderedDict, list, tuple, set, frozenset):
            raise _refuse(f'a value of type {kind.__name__}')
        if id(obj) in self.path:
            raise _refuse('a container that contains itself')
        if kind is collections.OrderedDict and vars(obj):
            raise _refuse('an OrderedDict with attributes')
        self.path.add(id(obj))
        try:
            if isinstance(obj, dict):
                for key in obj:
                    if type(key) not in _SCALAR_TYPES:
                        raise _refuse(f'a dict key of type {type(key).__name__}')
                return kind((key, self(value, depth + 1)) for key, value in obj.items())
            if kind in (set, frozenset):
                if not all(type(item) in _SCALAR_TYPES for item in obj):
                    raise _refuse('a set of something else than numbers and strings')
                return obj
            return kind(self(item, depth + 1) for item in obj)
        finally:
            self.path.discard(id(obj))


def unpickle(data, path):
    """The objects in `data` (a paddle.save file's bytes), checked and with their arrays
    rebuilt, before paddle's post-processing."""
    try:
        opcodes = _prescan(data)
        unpickler = _Unpickler(data, _BYTES_PER_FILE_BYTE * len(data) + _SLACK_BYTES)
        loaded = unpickler.load()
        return _Converter(unpickler, _OBJECTS_PER_OPCODE * opcodes + 1000)(loaded)
    except _Refused as exc:
        if exc.wanted:
            reason = (
                f'it asks to call {exc.wanted}, which a weights file never needs (only '
                f'arrays, numbers, strings and containers are loaded)'
            )
        else:
            reason = f'it holds {exc.what}, which paddle.save never writes'
        raise refused(path, reason) from None
    except Exception as exc:  # truncated or foreign bytes fail in many ways inside pickle
        detail = ' '.join(str(exc).split())[:200] or type(exc).__name__
        raise DamagedWeights(
            f'{path}: cannot be read as a paddle.save file ({detail}): it is truncated, '
            f'damaged or not a .pdparams/.pdopt/.pdstates file'
        ) from None


def refused(path, what):
    """The one-line refusal of a file whose loaded contents are not what they must be."""
    return RefusedWeights(
        f'{path}: refused to load: {what}; use weights from a source you trust, re-saved '
        f'with paddle.save'
    )


def read(path):
    """The bytes of a weights file: a regular file within the size limit."""
    try:
        return read_regular_file(
            path,
            max_bytes(),
            f'if you trust it, raise the limit with {MAX_BYTES_ENV}=<bytes>',
        )
    except NotAFile as exc:
        raise RefusedWeights(str(exc)) from None
    except OSError as exc:
        raise DamagedWeights(f'{path}: cannot be read ({exc.strerror}): check the path') from None


def load(path):
    """paddle.load(path) for .pdparams/.pdopt/.pdstates, without running code from the file.

    Raises RefusedWeights for a file asking for anything else (or too large, or not a
    regular file), DamagedWeights for one that is missing or not readable."""
    obj = unpickle(read(path), path)
    # As paddle.load: a state dict saved with its name table gets tensors named as saved;
    # any other object gets its arrays (or paddle's (name, array) tensor tuples) as tensors.
    try:
        if isinstance(obj, dict):
            obj = _pack_loaded_dict(obj)
            if _NAME_TABLE in obj:
                names = obj.pop(_NAME_TABLE)
                if not isinstance(names, dict):
                    raise ValueError(f'a name table of type {type(names).__name__}')
                for key, name in names.items():
                    if isinstance(obj.get(key), np.ndarray):
                        obj[key] = _ndarray_to_tensor(obj[key], return_numpy=False)
                        obj[key].name = str(name)
                return obj
        return _parse_load_result(obj, return_numpy=False)
    except Exception as exc:
        detail = ' '.join(str(exc).split())[:200] or type(exc).__name__
        raise refused(
            path, f'its contents are not laid out as paddle.save lays them out ({detail})'
        ) from None


def check_state_dict(state, path):
    """A loaded .pdparams must be {name: tensor}."""
    if not isinstance(state, dict):
        raise refused(path, f'it holds a {type(state).__name__}, not a state dict of tensors')
    for key, value in state.items():
        if not isinstance(key, str) or not hasattr(value, 'shape') or not hasattr(value, 'place'):
            raise refused(path, f'its entry {key!r:.60} is a {type(value).__name__}, not a tensor')
    return state


def set_weights(model, state, path, what='model'):
    """Sets a loaded state dict (read from `path`) into `model`; keys and shapes must fit."""
    check_state_dict(state, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserInputError(
            f"{what} weights '{path}' do not fit the {what} config: "
            f'{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected '
            f'(e.g. {unexpected[:2]}): use the config the weights were trained with'
        )
    for key, value in expected.items():
        if list(state[key].shape) != list(value.shape):
            raise UserInputError(
                f"{what} weights '{path}': {key} has shape {list(state[key].shape)}, the "
                f"config's model expects {list(value.shape)}: use the config the weights "
                f'were trained with'
            )
    model.set_state_dict(state)
    return path


def sha256(path):
    """The hex sha256 of a file, for provenance in logs."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
