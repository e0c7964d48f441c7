"""Prediction on images, as PaddleSeg's predict.py: the config's val transforms, the model
(trained weights, or an exported folder through Paddle Inference), the prediction mapped back
to the image's size, then

    save_dir/pseudo_color_prediction/<name>.png   the class ids as a palette ('P') PNG
    save_dir/added_prediction/<name>.jpg          the image blended 0.6/0.4 with the colours

<name> is the image's path relative to the folder (or list file) given, without extension.
In a folder, files that are not images are skipped with a warning naming each. An image that
cannot be read is named and skipped; the others are predicted, then predict() raises one
UserInputError naming them all (tools/predict.py: exit code 1).
A classifier's config (its val_dataset's task) writes one line per image instead:

    save_dir/predictions.txt                      "<image path> <class id>", PaddleClas's
                                                  list format
"""

import os

import cv2
import numpy as np
import paddle
from paddleseg.core.infer import reverse_transform
from paddleseg.cvlibs import SegBuilder
from paddleseg.transforms import Compose
from paddleseg.utils import logger
from paddleseg.utils.visualize import get_color_map_list, get_pseudo_color_map, visualize

from paddleseg_ext.components import build_model_without_weights, dataset_task, image_channels
from paddleseg_ext.config import load_config
from paddleseg_ext.datasets.dataset import IMAGE_EXTENSIONS, read_image
from paddleseg_ext.deploy.inference import InferenceModel, read_deploy_yaml
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.pretrained import load_weights

PSEUDO_DIR = 'pseudo_color_prediction'
ADDED_DIR = 'added_prediction'
CLASSES_FILE = 'predictions.txt'


def _is_image(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _name(path, root):
    return os.path.splitext(os.path.relpath(path, root))[0]


def _read_list_file(list_path):
    """(image path, name) for the first column of each line; relative paths are relative to
    the list file's folder."""
    root = os.path.dirname(os.path.abspath(list_path))
    images = []
    with open(list_path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            item = line.split()[0]
            path = item if os.path.isabs(item) else os.path.join(root, item)
            if not os.path.isfile(path):
                raise UserInputError(
                    f"{list_path}:{line_no}: image '{path}' does not exist: "
                    f"fix the path (relative to the list file's folder) or "
                    f'remove the line'
                )
            name = (
                os.path.splitext(os.path.basename(path))[0]
                if os.path.isabs(item)
                else _name(path, root)
            )
            images.append((path, name))
    return images


def list_images(image_path):
    """[(image path, output name)] for an image, a folder (recursively) or a list file."""
    if os.path.isdir(image_path):
        images = []
        for dirpath, dirnames, filenames in os.walk(image_path):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if _is_image(name):
                    images.append((path, _name(path, image_path)))
                else:
                    logger.warning(
                        f"skipped '{path}': not an image ({', '.join(IMAGE_EXTENSIONS)})"
                    )
        if not images:
            raise UserInputError(
                f"--image_path '{image_path}' holds no images "
                f'({", ".join(IMAGE_EXTENSIONS)}): pass another folder'
            )
    elif os.path.isfile(image_path):
        if _is_image(image_path):
            images = [(image_path, os.path.splitext(os.path.basename(image_path))[0])]
        else:
            images = _read_list_file(image_path)
            if not images:
                raise UserInputError(f"--image_path '{image_path}': the list file is empty")
    else:
        raise UserInputError(
            f"--image_path '{image_path}' does not exist: pass an image, a "
            f'folder of images or a list file'
        )
    names = [name for _, name in images]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise UserInputError(
            f"--image_path '{image_path}': two images would both be saved as "
            f"'{duplicate}': rename one of them"
        )
    return images


def val_transforms(config):
    """The config's val_dataset transforms as a paddleseg Compose."""
    dataset_cfg = config.dic['val_dataset']
    try:
        transforms = SegBuilder(config).val_transforms
    except Exception as exc:
        raise UserInputError(
            f'building val_dataset.transforms failed: {" ".join(str(exc).split())}'
        ) from None
    return Compose(transforms, img_channels=image_channels(dataset_cfg))


def preprocess(image_path, transforms):
    """(float32 1CHW numpy, trans_info) for one image file."""
    image = read_image(image_path, transforms.img_channels, fix='replace it or leave it out')
    data = transforms({'img': image.astype('float32'), 'trans_info': []})
    return data['img'][np.newaxis], data['trans_info']


class DygraphModel:
    """A trained model (dygraph) with InferenceModel's `predict_ids`."""

    def __init__(self, model):
        self.model = model
        self.model.eval()

    def predict_ids(self, image, trans_info):
        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(image))[0]
        logits = reverse_transform(logits.astype('float32'), trans_info, mode='bilinear')
        return paddle.argmax(logits, axis=1).numpy()[0]

    def predict_class(self, image):
        """A classifier's class id for one preprocessed image (1CHW)."""
        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(image))[0]
        return int(paddle.argmax(logits, axis=1).numpy()[0])


def load_predictor(config, model_path=None, inference_dir=None):
    """DygraphModel for model_path, or InferenceModel for inference_dir (exactly one)."""
    if (model_path is None) == (inference_dir is None):
        raise UserInputError(
            'pass exactly one of --model_path (trained weights) and '
            '--inference_dir (a tools/export.py folder)'
        )
    if inference_dir is not None:
        model = InferenceModel(inference_dir)
        exported = read_deploy_yaml(inference_dir).get('transforms')
        if exported is not None and exported != config.dic['val_dataset'].get('transforms'):
            logger.warning(
                f'{inference_dir}/deploy.yaml has other transforms than the '
                f"config's val_dataset; using the config's"
            )
        return model
    model, _ = build_model_without_weights(config)  # model_path is the weights used
    load_weights(model, model_path)
    return DygraphModel(model)


def save_prediction(image_path, ids, save_dir, name, color_map):
    """Writes the palette PNG and the overlay JPEG; returns their paths."""
    ids = ids.astype(np.uint8)
    mask_path = os.path.join(save_dir, PSEUDO_DIR, name + '.png')
    added_path = os.path.join(save_dir, ADDED_DIR, name + '.jpg')
    for path in (mask_path, added_path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    get_pseudo_color_map(ids, color_map).save(mask_path)
    added = visualize(image_path, ids, color_map, weight=0.6)
    if not cv2.imwrite(added_path, added):
        raise UserInputError(f"cannot write '{added_path}': check --save_dir")
    return mask_path, added_path


def save_classes(predictions, save_dir):
    """Writes [(image path, class id)] as save_dir/predictions.txt; returns its path."""
    path = os.path.join(save_dir, CLASSES_FILE)
    with open(path, 'w') as f:
        f.writelines(f'{image_path} {class_id}\n' for image_path, class_id in predictions)
    return path


def predict(config_path, image_path, save_dir, model_path=None, inference_dir=None, opts=None):
    """Predicts every image of image_path into save_dir; returns [(mask png, overlay jpg)],
    or for a classifier [(image path, class id)]."""
    config = load_config(config_path, opts=opts, required=('model', 'val_dataset'))
    images = list_images(image_path)
    transforms = val_transforms(config)
    predictor = load_predictor(config, model_path, inference_dir)
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as exc:
        raise UserInputError(
            f"--save_dir '{save_dir}' cannot be created ({exc.strerror}): choose another folder"
        ) from None
    logger.info(f'Predicting {len(images)} image(s) into {save_dir}')
    classify = dataset_task(config.dic['val_dataset']) == 'classification'
    color_map = get_color_map_list(256)
    written, unreadable = [], []
    for path, name in images:
        try:
            image, trans_info = preprocess(path, transforms)
        except UserInputError as exc:
            # One bad file in a folder should not cost the user the others' predictions.
            logger.warning(f'skipped: {exc}')
            unreadable.append(path)
            continue
        if classify:
            written.append((path, predictor.predict_class(image)))
        else:
            ids = predictor.predict_ids(image, trans_info)
            written.append(save_prediction(path, ids, save_dir, name, color_map))
    if classify:
        logger.info(f'Wrote {save_classes(written, save_dir)}')
    elif written:
        logger.info(f'Wrote {save_dir}/{PSEUDO_DIR}/*.png and {save_dir}/{ADDED_DIR}/*.jpg')
    if unreadable:
        raise UserInputError(
            f'{len(unreadable)} of {len(images)} image(s) could not be read and were skipped '
            f'({", ".join(unreadable)}); the other {len(written)} were predicted into '
            f'{save_dir}: replace or remove the unreadable ones'
        )
    return written
