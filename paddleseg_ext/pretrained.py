"""`pretrained:` weights: URLs fetched into a local cache by atomic writes, and paddleseg's
own pretrained loading routed through the safe reader (paddleseg_ext.weights).

Cache: $PADDLESEG_DISTILL_CACHE, else ~/.cache/paddleseg_distill. A download is written
under a temporary name in the cache folder and renamed when complete, so an interrupted or
failed one never leaves a file that a later run would take for the weights.
"""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.errors import UserInputError

URL_SCHEMES = ('http://', 'https://', 'file://')
_ARCHIVES = ('.tar.gz', '.tgz', '.tar', '.zip')
_DOWNLOAD_TIMEOUT_S = 60


def is_url(value):
    return isinstance(value, str) and value.lower().startswith(URL_SCHEMES)


def cache_dir():
    return os.environ.get('PADDLESEG_DISTILL_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'paddleseg_distill'
    )


def _download(url, destination):
    """Writes url's bytes to destination, atomically; a failure leaves nothing there."""
    folder = os.path.dirname(destination)
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, prefix='.download-')
    try:
        with (
            os.fdopen(handle, 'wb') as out,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
        ):
            expected = response.headers.get('Content-Length')
            shutil.copyfileobj(response, out)
            out.flush()
            os.fsync(out.fileno())
            if expected is not None and out.tell() != int(expected):
                raise OSError(f'got {out.tell()} of {expected} bytes')
        os.replace(partial, destination)
    except Exception as exc:
        os.unlink(partial)
        detail = ' '.join(str(getattr(exc, 'reason', None) or exc).split())
        raise UserInputError(
            f"pretrained weights '{url}' could not be downloaded ({detail}): check the URL "
            f'and the network, or download the file yourself and set `pretrained:` to its '
            f'local path'
        ) from None


def _unpack(archive, url, target_dir):
    """Extracts a downloaded archive into target_dir, atomically."""
    staging = tempfile.mkdtemp(dir=os.path.dirname(target_dir), prefix='.unpack-')
    try:
        if archive.endswith('.zip'):
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter='data')
        try:
            os.replace(staging, target_dir)
        except OSError:
            if not os.path.isdir(target_dir):
                raise
            shutil.rmtree(staging)  # another process (e.g. a second rank) unpacked it first
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserInputError(
            f"pretrained archive '{url}' cannot be unpacked ({exc}): "
            f'download and unpack it yourself'
        ) from None


def local_path(path_or_url):
    """A local weights path: a path is returned as is, a URL is downloaded once into the
    cache (an archive is unpacked there) and its cached copy returned."""
    if not is_url(path_or_url):
        return path_or_url
    url_path = urllib.parse.unquote(urllib.parse.urlparse(path_or_url).path)
    name = os.path.basename(url_path) or 'weights.pdparams'
    key = hashlib.sha256(path_or_url.encode()).hexdigest()[:16]
    cached = os.path.join(cache_dir(), f'{key}-{name}')
    if name.endswith(_ARCHIVES):
        unpacked = cached + '.d'
        if not os.path.isdir(unpacked):
            logger.info(f'Downloading {path_or_url} to {unpacked}')
            _download(path_or_url, cached)
            try:
                _unpack(cached, path_or_url, unpacked)
            finally:
                os.unlink(cached)
        return _find_weights(unpacked, path_or_url)
    if not os.path.isfile(cached):
        logger.info(f'Downloading {path_or_url} to {cached}')
        _download(path_or_url, cached)
    return cached


def _find_weights(unpacked, url):
    for folder, _, files in os.walk(unpacked):
        if 'model.pdparams' in files:
            return os.path.join(folder, 'model.pdparams')
    raise UserInputError(f"pretrained archive '{url}' holds no model.pdparams")


def load_pretrained_model(model, pretrained_model):
    """paddleseg.utils.load_pretrained_model, reading through paddleseg_ext.weights:
    the parameters whose names and shapes match are loaded, the others reported."""
    if pretrained_model is None:
        logger.info(
            f'No pretrained model to load, {type(model).__name__} will be trained from scratch.'
        )
        return
    path = local_path(pretrained_model)
    if not os.path.isfile(path):
        raise UserInputError(
            f"pretrained weights '{path}' do not exist: fix `pretrained:` or set it to Null"
        )
    state = weights.load(path)
    own = model.state_dict()
    loaded = 0
    for key, value in own.items():
        if key not in state:
            logger.warning(f'{key} is not in pretrained model {path}')
        elif list(state[key].shape) != list(value.shape):
            logger.warning(
                f'[SKIP] {key}: pretrained shape {list(state[key].shape)}, '
                f'model shape {list(value.shape)}'
            )
        else:
            own[key] = state[key]
            loaded += 1
    model.set_dict(own)
    logger.info(
        f'Loaded {loaded}/{len(own)} variables into {type(model).__name__} from '
        f'{path} (sha256 {weights.sha256(path)})'
    )


def route_paddleseg_loading():
    """Makes paddleseg's models (init_weight → utils.load_entire_model /
    load_pretrained_model) read their `pretrained:` weights through this module."""
    from paddleseg import utils
    from paddleseg.utils import utils as utils_module

    utils.load_pretrained_model = load_pretrained_model
    utils_module.load_pretrained_model = load_pretrained_model
