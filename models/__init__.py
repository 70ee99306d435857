"""Model zoo: tiny students built from plain torch modules, and named pretrained classifiers.

``create_model`` is the one factory; ``model_definition`` is what a checkpoint stores to rebuild a model.
"""
from models.common import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from models.factory import create_model, model_definition
from models.pruned import layer_shapes, restore_shapes
from models.pretrained import LITE0, NAMED_MODELS, classifier_name, load_weights_file, read_state_dict
from models.students import BLOCKS, PRESETS, Stage, Student, StudentSpec, fuse_bn

__all__ = [
    "Preprocess", "IMAGENET_MEAN", "IMAGENET_STD", "create_model", "model_definition",
    "LITE0", "NAMED_MODELS", "classifier_name", "load_weights_file", "read_state_dict",
    "BLOCKS", "PRESETS", "Stage", "Student", "StudentSpec", "fuse_bn", "layer_shapes", "restore_shapes",
]
