"""Hostile weights files and configs, as an attacker would write them: each is built from
what the reader allows (or nearly), so each must be refused by a check, not by luck.

WEIGHTS: {name: (function(path, marker) that writes the file, what the error line says)}.
"""

import os
import pickle
import struct

import numpy as np

_reconstruct = np.zeros(1).__reduce__()[0]


class Reduce:
    """Pickles as fn(*args), then BUILD with `state` when one is given."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


class RunsCommand:
    """Pickles as a call of os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def dtype(name, state):
    return Reduce(np.dtype, (name, False, True), state)


def array(dtype_obj, shape, data):
    return Reduce(_reconstruct, (np.ndarray, (0,), b'b'), (1, shape, dtype_obj, False, data))


def write(path, obj, protocol=2):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)


def object_dtype(path, marker):
    """numpy's object dtype through dtype + BUILD (a record of one object field whose
    flags say it holds none), then _reconstruct from raw bytes: wild pointers, SIGSEGV
    in paddle.load."""
    record = dtype('V8', (3, '|', None, ('a',), {'a': (np.dtype('O'), 0)}, 8, 1, 0))
    write(path, {'conv.weight': array(record, (4,), b'\x41' * 32)})


def dtype_state(path, marker):
    """A float dtype whose BUILD state declares fields and an item size of its own."""
    f4 = dtype('f4', (3, '<', None, ('a',), {'a': (np.dtype('f4'), 0)}, 8, 8, 63))
    write(path, {'conv.weight': array(f4, (4,), b'\x00' * 32)})


def memo_reuse(path, marker):
    """One 8 MiB array referenced eight times through the pickle memo (paddle makes a
    tensor of each reference)."""
    big = np.zeros(1 << 21, dtype='float32')
    write(path, {f'w{i}': big for i in range(8)}, protocol=4)


def bytearray_size(path, marker):
    """35-odd bytes asking for 3 GB: bytearray(3_000_000_000)."""
    write(path, Reduce(bytearray, (3_000_000_000,)))


def declared_length(path, marker):
    """A BINBYTES8 declaring 3 GB in a file of a few bytes."""
    with open(path, 'wb') as f:
        f.write(b'\x80\x04\x8e' + struct.pack('<Q', 3_000_000_000) + b'xx.')


def memo_index(path, marker):
    """A memo slot at index 2**32 - 1 (the unpickler would size its memo table to it)."""
    with open(path, 'wb') as f:
        f.write(b'\x80\x02}r\xff\xff\xff\xff.')


def deep_nesting(path, marker):
    """Lists nested 100000 deep (paddle's post-processing recurses)."""
    depth = 100_000
    with open(path, 'wb') as f:
        f.write(b'\x80\x02' + b']' * depth + b'a' * (depth - 1) + b'.')


def shared_bomb(path, marker):
    """A list of two references to a list of two references ... 60 levels: 2**60 paths."""
    node = [0]
    for _ in range(60):
        node = [node, node]
    write(path, {'w': node})


def name_table(path, marker):
    """paddle's name table that is not a dict."""
    write(path, {'StructuredToParameterName@@': 5, 'conv.weight': np.zeros(3, 'float32')})


def wrong_values(path, marker):
    """A state dict whose values are not arrays."""
    write(path, {'conv.weight': 5, 'conv.bias': 'x'})


def eval_call(path, marker):
    """builtins.eval, paddle's LoDTensor reduction, asked to evaluate something else."""
    write(path, {'w': Reduce(eval, (f"__import__('os').system('touch {marker}')", {}))})


def os_system(path, marker):
    write(path, {'conv.weight': RunsCommand(f'touch {marker}')})


WEIGHTS = {
    'os_system': (os_system, 'refused to load: it asks to call posix.system'),
    'eval': (eval_call, 'refused to load: it asks to call builtins.eval'),
    'object_dtype': (object_dtype, "refused to load: it holds an array of dtype 'V8'"),
    'dtype_state': (dtype_state, "refused to load: it holds dtype 'f4' with the state"),
    'memo_reuse': (memo_reuse, 'refused to load: it holds more memory than'),
    'bytearray_size': (bytearray_size, 'refused to load: it holds bytearray built from int'),
    'declared_length': (declared_length, 'cannot be read as a paddle.save file'),
    'memo_index': (memo_index, 'refused to load: it holds a memo index of 4294967295'),
    'deep_nesting': (deep_nesting, 'refused to load: it holds containers nested deeper'),
    'shared_bomb': (shared_bomb, 'refused to load: it holds more objects than'),
    'name_table': (name_table, 'refused to load: its contents are not laid out'),
    'wrong_values': (wrong_values, "refused to load: its entry 'conv.weight' is a int"),
}


def fifo(path, marker):
    os.mkfifo(path)


def dev_zero(path, marker):
    os.symlink('/dev/zero', path)


# Paths that are not regular files: read, they would hang or fill memory.
NOT_FILES = {
    'fifo': (fifo, 'is not a regular file'),
    'dev_zero': (dev_zero, 'is not a regular file'),
}


def anchor_bomb(levels=9, width=9):
    """YAML whose nodes, aliases expanded, number width**levels."""
    lines = [f'a0: &a0 [{", ".join(["x"] * width)}]']
    for i in range(1, levels):
        lines.append(f'a{i}: &a{i} [{", ".join([f"*a{i - 1}"] * width)}]')
    return '\n'.join(lines) + '\n'
