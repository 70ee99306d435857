import os
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402
import torch  # noqa: E402

from distill.demo import make_demo_dataset  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):  # a test per core (setup.cfg addopts, pytest-xdist): one torch thread each
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small synthetic data set in the contract layout (shared, read-only by convention)."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=12, test_images=7, seed=1,
                             min_side=20, max_side=60)


@pytest.fixture
def fresh_demo(tmp_path):
    """A private copy the test may modify."""
    return make_demo_dataset(tmp_path / "data", per_class=10, test_images=5, seed=2, min_side=20, max_side=50)


@pytest.fixture
def small_teacher():
    """Pipeline settings that make the teacher stage a small untrained torchvision network instead of the
    recipe's EfficientNet-Lite0 (its ImageNet weights are tested in test_models): the stages, not the teacher,
    are what a pipeline test checks."""
    return {"teacher": {"model": {"init_args": {"net": "mobilenet_v3_small", "weights": None}}},
            "model": {"init_args": {"teacher": {"name": "mobilenet_v3_small"}}}}


@pytest.fixture
def quick_pipeline(small_teacher):
    """Pipeline settings for a test of the stages: one epoch of two batches for the teacher and each student, two
    cached views per image (eager teacher), a fifth of the images held out, the small teacher."""
    from distill.recipe import merge

    one_epoch = {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False}
    return merge({"trainer": one_epoch, "teacher_cache": {"views": 2, "backend": "torch"},
                  "data": {"holdout_fraction": 0.2}, "teacher": {"trainer": one_epoch}}, small_teacher)
