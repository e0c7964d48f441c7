"""`pretrained:` weights: URLs fetched into a local cache by atomic writes, and paddleseg's
own pretrained loading routed through the safe reader (paddleseg_ext.weights).

Cache: $PADDLESEG_DISTILL_CACHE, else ~/.cache/paddleseg_distill. A download is written
under a temporary name in the cache folder and renamed when complete, so an interrupted or
failed one never leaves a file that a later run would take for the weights.
"""

import contextlib
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.files import MAX_BYTES_ENV, max_bytes, too_large

URL_SCHEMES = ('http://', 'https://', 'file://')
_ARCHIVES = ('.tar.gz', '.tgz', '.tar', '.zip')
_DOWNLOAD_TIMEOUT_S = 60
_BLOCK = 1 << 20
# A download in progress: .download-<pid of the downloading process>-<random>.
_PARTIAL = re.compile(r'^\.download-(\d+)-')
_RAISE_HINT = f'if you trust it, raise the limit with {MAX_BYTES_ENV}=<bytes>'


class _TooLarge(Exception):
    pass


def is_url(value):
    return isinstance(value, str) and value.lower().startswith(URL_SCHEMES)


def cache_dir():
    return os.environ.get('PADDLESEG_DISTILL_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'paddleseg_distill'
    )


def _remove_stale_partials(folder):
    """Partial downloads left by processes that no longer run (killed mid-download)."""
    for name in os.listdir(folder):
        match = _PARTIAL.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        except OSError:
            pass  # the process exists (owned by someone else)


def _open_url(url):
    """The response for url; a file:// URL must name a regular file (not /dev/zero, a FIFO)."""
    if url.lower().startswith('file://'):
        path = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        if not os.path.isfile(path):
            raise OSError(f'{path} is not a regular file')
    return urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S)


def _download(url, destination):
    """Writes url's bytes to destination, atomically, at most files.max_bytes() of them; a
    failure (or an interruption) leaves nothing there."""
    folder = os.path.dirname(destination)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_partials(folder)
    limit = max_bytes()
    handle, partial = tempfile.mkstemp(dir=folder, prefix=f'.download-{os.getpid()}-')
    try:
        with os.fdopen(handle, 'wb') as out, _open_url(url) as response:
            expected = response.headers.get('Content-Length')
            if expected is not None and int(expected) > limit:
                raise _TooLarge(too_large('it', int(expected), limit, _RAISE_HINT))
            while block := response.read(_BLOCK):
                out.write(block)
                if out.tell() > limit:
                    raise _TooLarge(too_large('it', out.tell(), limit, _RAISE_HINT))
            out.flush()
            os.fsync(out.fileno())
            if expected is not None and out.tell() != int(expected):
                raise OSError(f'got {out.tell()} of {expected} bytes')
        os.replace(partial, destination)
    except BaseException as exc:
        os.unlink(partial)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: the partial file is gone, go on stopping
        if isinstance(exc, _TooLarge):
            raise UserInputError(f"pretrained weights '{url}': {exc}") from None
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
        limit = max_bytes()
        if archive.endswith('.zip'):
            with zipfile.ZipFile(archive) as z:
                _check_unpacked_size(sum(m.file_size for m in z.infolist()), limit, url)
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                _check_unpacked_size(sum(m.size for m in t.getmembers()), limit, url)
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


def _check_unpacked_size(size, limit, url):
    if size > limit:
        raise UserInputError(
            f"pretrained archive '{url}': {too_large('unpacked, it', size, limit, _RAISE_HINT)}"
        )


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
    if not os.path.exists(path):
        raise UserInputError(
            f"pretrained weights '{path}' do not exist: fix `pretrained:` or set it to Null"
        )
    state = weights.check_state_dict(weights.load(path), path)
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


# paddleseg's backbones that read their `pretrained:` file themselves (paddle.load in
# init_weight, after load_pretrained_model), by the module that defines them.
SELF_LOADING_MODULES = (
    'paddleseg.models.backbones.vision_transformer',
    'paddleseg.models.backbones.cae',
)


def localize(model_cfg):
    """Replaces every `pretrained:` URL in a model config by its checked local copy, so
    nothing else downloads it; the file of a backbone that reads it itself
    (SELF_LOADING_MODULES) is read through paddleseg_ext.weights first, so a file refused
    there never reaches its paddle.load."""
    from paddleseg.cvlibs import manager

    if isinstance(model_cfg, list):
        for item in model_cfg:
            localize(item)
    if not isinstance(model_cfg, dict):
        return
    value = model_cfg.get('pretrained')
    if isinstance(value, str) and value:
        model_cfg['pretrained'] = local_path(value)
        component = manager.BACKBONES.components_dict.get(model_cfg.get('type'))
        if getattr(component, '__module__', None) in SELF_LOADING_MODULES:
            weights.load(model_cfg['pretrained'])
    for key, item in model_cfg.items():
        if key != 'pretrained':
            localize(item)


def _refuse_paddleseg_download(url):
    raise UserInputError(
        f"pretrained weights '{url}': a download outside paddleseg_ext.pretrained: set "
        f'`pretrained:` in the config, which is fetched and checked before the model is built'
    )


def route_paddleseg_loading():
    """Makes paddleseg's models (init_weight → utils.load_entire_model /
    load_pretrained_model) read their `pretrained:` weights through this module, and
    refuses paddleseg's own downloader: every URL is fetched by local_path."""
    from paddleseg import utils
    from paddleseg.utils import utils as utils_module

    for module in (utils, utils_module):
        module.load_pretrained_model = load_pretrained_model
        module.download_pretrained_model = _refuse_paddleseg_download


def load_weights(model, path, what='model'):
    """Loads a .pdparams (a path, a folder holding one, or a URL) into `model`, strictly:
    missing file, keys or shapes are errors. Returns the local path read."""
    if path is None:
        raise UserInputError(f'no weights given for the {what}: pass a .pdparams path')
    path = local_path(path)
    if os.path.isdir(path):
        path = os.path.join(path, 'model.pdparams')
    if not os.path.exists(path):
        raise UserInputError(
            f"{what} weights '{path}' do not exist: check the path "
            f'(e.g. output/<run>/best_model/model.pdparams)'
        )
    weights.set_weights(model, weights.load(path), path, what)
    return path
