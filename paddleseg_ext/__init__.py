"""Extends and repairs paddleseg 2.8.0 on paddle 2.6 and 3.x: importing this registers our
datasets, classification models and losses in paddleseg's `manager` under names of their
own, the repairs paddle 3 needs (compat.py), and routes paddleseg's pretrained loading
through the safe reader; the package provides the evaluation, metrics and training engine
paddleseg's own versions lack there."""

import os
import sys

from paddleseg_ext import startup

_paddle_loaded_first = 'paddle' in sys.modules
if not _paddle_loaded_first:
    startup.run_startup_line()
# Quiet paddle's C++ INFO chatter before paddle is imported anywhere.
os.environ.setdefault('GLOG_minloglevel', '2')

# Importing these registers their components in paddleseg's manager.
from paddleseg_ext import compat, datasets, losses, models  # noqa: E402,F401
from paddleseg_ext.errors import UserInputError  # noqa: E402,F401
from paddleseg_ext.pretrained import route_paddleseg_loading  # noqa: E402

route_paddleseg_loading()  # paddleseg's models read `pretrained:` through our safe reader

if _paddle_loaded_first and not startup.png_labels_decode():
    raise ImportError(
        'paddle was loaded before paddleseg_ext without the start-up file `make setup` '
        "installs, and this paddle's zlib breaks Pillow's PNG decoding (labels): run "
        '`make setup`, or import paddleseg_ext before paddle'
    )
