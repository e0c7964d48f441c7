"""Extends and repairs paddleseg 2.8.0 on paddle 2.6: importing this registers our
datasets in paddleseg's `manager` and provides the evaluation, metrics and training engine
that paddleseg's own versions lack on this paddle."""
import os

# Quiet paddle's C++ INFO chatter before paddle is imported anywhere.
os.environ.setdefault('GLOG_minloglevel', '2')

from paddleseg_ext import datasets  # noqa: E402,F401  (registers Dataset, OpticDiscSeg)
from paddleseg_ext.errors import UserInputError  # noqa: E402,F401
