"""What a process needs before paddle loads, whichever of paddle and this package is
imported first: one zlib for every native library, and paddle's import-time warning about a
build tool filtered.

paddle 2.6's libpaddle exports the zlib it was built with. A library that resolves its
zlib calls after libpaddle is loaded (Pillow, OpenCV) binds some of them to paddle's copy
and some to the system's, so PNG reads fail ("codec configuration error") and PNG writes
crash. With the system zlib loaded into the global namespace before libpaddle, every
library binds to that one copy.

paddle 3 warns on stderr at import when the ccache build tool is missing (it matters only
for compiling custom C++ ops); our user errors are one line on stderr.

`make setup` writes STARTUP_LINE into a `.pth` file of the venv, so Python runs it at
start-up, before any user code; importing this package before paddle does the same where
that file is missing.
"""

import os
import sysconfig

# A .pth line that starts with `import` is executed by Python's `site` at start-up.
STARTUP_LINE = (
    "import ctypes, warnings; warnings.filterwarnings('ignore', message='No ccache found'); "
    'exec("try: ctypes.CDLL(\'libz.so.1\', mode=ctypes.RTLD_GLOBAL)\\nexcept OSError: pass")'
)
STARTUP_FILE = 'paddleseg_distill_startup.pth'

# An 8x8 palette PNG (class ids 0..3): what a PaddleSeg label is.
_PROBE_PNG = (
    b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x08\x00\x00\x00\x08\x02\x03\x00\x00\x00'
    b'\xb9aV\x18\x00\x00\x00\x0cPLTE\x00\x00\x00\x80\x00\x00\x00\x80\x00\x80\x80\x008\xec\x04'
    b'\x80\x00\x00\x00\x0eIDATx\x9cc\x94f`b\xc0\x82\x00\x03E\x00+\xab\xa2\xc9"\x00\x00\x00\x00IEND'
    b'\xaeB`\x82'
)


def run_startup_line():
    """Runs STARTUP_LINE here: useful only before paddle is loaded."""
    exec(STARTUP_LINE)


def png_labels_decode():
    """Whether Pillow decodes a PNG label in this process."""
    import io

    from PIL import Image

    try:
        Image.open(io.BytesIO(_PROBE_PNG)).load()
    except OSError:
        return False
    return True


def install_startup_hook():
    """Writes STARTUP_FILE into this interpreter's site-packages (`make setup` calls it)."""
    path = os.path.join(sysconfig.get_paths()['purelib'], STARTUP_FILE)
    with open(path, 'w') as handle:
        handle.write(STARTUP_LINE + '\n')
    return path
