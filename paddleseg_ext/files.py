"""Reading a file a stranger may have handed us: a regular file (or a link to one) of a
bounded size, read whole; devices, FIFOs and sockets are refused before they are read.

The bound on weights files and downloads is $PADDLESEG_DISTILL_MAX_BYTES (bytes, default
2 GiB), raised for a larger checkpoint or pretrained archive.
"""

import os
import stat

from paddleseg_ext.errors import UserInputError

MAX_BYTES_ENV = 'PADDLESEG_DISTILL_MAX_BYTES'
DEFAULT_MAX_BYTES = 2 << 30


def max_bytes():
    """The largest weights file read, or download fetched, in bytes."""
    value = os.environ.get(MAX_BYTES_ENV)
    if value is None:
        return DEFAULT_MAX_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise UserInputError(
            f'{MAX_BYTES_ENV}={value!r} is not a positive number of bytes '
            f'(e.g. {MAX_BYTES_ENV}={DEFAULT_MAX_BYTES * 2})'
        )
    return limit


class NotAFile(UserInputError):
    """The path is not a regular file, or it is larger than the limit: it is not read."""


def too_large(what, size, limit, raise_hint):
    return f'{what} is {size} bytes, over the limit of {limit} bytes: {raise_hint}'


def read_regular_file(path, limit, raise_hint):
    """The bytes of `path`, a regular file of at most `limit` bytes; raises NotAFile for
    anything else (a device such as /dev/zero, a FIFO, a folder, a larger file) and
    OSError where it cannot be opened. Opened without blocking, so a FIFO cannot hang."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile(
                f'{path}: is not a regular file (a device, FIFO, socket or folder): '
                f'pass the path of the file itself'
            )
        if info.st_size > limit:
            raise NotAFile(too_large(path, info.st_size, limit, raise_hint))
        with os.fdopen(fd, 'rb', closefd=False) as f:
            data = f.read(info.st_size)
            if f.read(1):
                raise NotAFile(f'{path}: grew while it was read: read it when it is complete')
    finally:
        os.close(fd)
    return data
