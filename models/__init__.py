"""Model zoo: tiny students built from plain torch modules, and named pretrained classifiers.

``create_model`` is the one factory, over one registry of names (``register_model``, ``list_models``);
``model_definition`` is what a checkpoint stores to rebuild a model.
"""
from . import presets  # noqa: F401  (registers the student presets)
from .common import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .deploy import fuse_bn, reparameterize
from .factory import create_model, model_definition
from .pretrained import DamagedFileError, classifier_name, load_file, load_weights_file, read_state_dict, state_dict_of
from .pruned import layer_shapes, restore_shapes
from .registry import UnknownModelError, is_registered, list_models, register_model
from .students import BLOCKS, Stage, Student, StudentSpec

__all__ = [
    "Preprocess", "IMAGENET_MEAN", "IMAGENET_STD", "create_model", "model_definition",
    "DamagedFileError", "classifier_name", "load_file", "load_weights_file", "read_state_dict", "state_dict_of",
    "register_model", "list_models", "is_registered", "UnknownModelError",
    "BLOCKS", "Stage", "Student", "StudentSpec", "fuse_bn", "reparameterize", "layer_shapes", "restore_shapes",
]
