"""Model zoo: tiny students built from plain torch modules, and pretrained teachers."""
from models.common import Preprocess, IMAGENET_MEAN, IMAGENET_STD
from models.students import PRESETS, StudentSpec, Stage, build_student, fuse_bn, student_spec
from models.teachers import TEACHER_NAMES, build_model, torchvision_teacher, efficientnet_lite0

__all__ = [
    "Preprocess", "IMAGENET_MEAN", "IMAGENET_STD",
    "PRESETS", "StudentSpec", "Stage", "build_student", "fuse_bn", "student_spec",
    "TEACHER_NAMES", "build_model", "torchvision_teacher", "efficientnet_lite0",
]
