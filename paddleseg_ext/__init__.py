"""Extends and repairs paddleseg 2.8.0 on paddle 2.6 and 3.x: importing this registers our
datasets, classification models and losses in paddleseg's `manager` and the repairs paddle 3
needs (compat.py); the package provides the evaluation, metrics and training engine
paddleseg's own versions lack there."""

import os
import sys

# paddle 2.6's libpaddle exports its own zlib symbols; if it is loaded before Pillow's
# decoder, Pillow binds to them and every PNG read fails with "codec configuration error".
# Loading Pillow first keeps its own zlib, so this package must be imported before paddle.
if 'paddle' in sys.modules and 'PIL._imaging' not in sys.modules:
    raise ImportError(
        'import paddleseg_ext before paddle: paddle loaded first breaks '
        "Pillow's PNG decoding (labels)"
    )
import PIL._imaging  # noqa: E402,F401

# Quiet paddle's C++ INFO chatter before paddle is imported anywhere.
os.environ.setdefault('GLOG_minloglevel', '2')

from paddleseg_ext import compat  # noqa: E402,F401  (paddle 3 repairs to paddleseg)
from paddleseg_ext import datasets  # noqa: E402,F401  (registers Dataset, OpticDiscSeg, ...)
from paddleseg_ext import losses  # noqa: E402,F401  (registers CELoss)
from paddleseg_ext import models  # noqa: E402,F401  (registers ResNet50, MobileNetV1, ...)
from paddleseg_ext.errors import UserInputError  # noqa: E402,F401
from paddleseg_ext.pretrained import route_paddleseg_loading  # noqa: E402

route_paddleseg_loading()  # paddleseg's models read `pretrained:` through our safe reader
