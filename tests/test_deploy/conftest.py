"""Fixtures of the deployment tests (see ``deploy_fixtures.py``)."""
import pytest
from deploy_fixtures import save_random_checkpoint


@pytest.fixture(scope='session')
def checkpoint(tmp_path_factory):
    """Path of the random D-FINE-N checkpoint of ``deploy_fixtures``."""
    return save_random_checkpoint(
        str(tmp_path_factory.mktemp('ckpt') / 'dfine_n_random.pth'))
