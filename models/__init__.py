"""Model zoo: tiny students built from plain torch modules, and named pretrained classifiers.

``create_model`` is the one factory; ``model_definition`` is what a checkpoint stores to rebuild a model.
"""
from .common import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .factory import create_model, model_definition
from .pretrained import (
    LITE0,
    NAMED_MODELS,
    classifier_name,
    load_weights_file,
    read_state_dict,
)
from .pruned import layer_shapes, restore_shapes
from .students import BLOCKS, PRESETS, Stage, Student, StudentSpec, fuse_bn, reparameterize

__all__ = [
    "Preprocess", "IMAGENET_MEAN", "IMAGENET_STD", "create_model", "model_definition",
    "LITE0", "NAMED_MODELS", "classifier_name", "load_weights_file", "read_state_dict",
    "BLOCKS", "PRESETS", "Stage", "Student", "StudentSpec", "fuse_bn", "reparameterize", "layer_shapes", "restore_shapes",
]
