import os
import warnings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402

from distill.demo import make_demo_dataset  # noqa: E402


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small synthetic data set in the contract layout (shared, read-only by convention)."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=12, test_images=7, seed=1,
                             min_side=20, max_side=60)


@pytest.fixture
def fresh_demo(tmp_path):
    """A private copy the test may modify."""
    return make_demo_dataset(tmp_path / "data", per_class=10, test_images=5, seed=2, min_side=20, max_side=50)
