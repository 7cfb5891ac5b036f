"""--train-epochs: a real run_fn (TFX's own FnArgs over real Transform output, in a
process of its own) counts its train split and trains ceil(E * examples / batch) steps."""
import pytest

from tfx_mtl.models.trainer_config import TrainerConfig

from . import test_checkpoint_key as resume  # noqa: F401  (its process helpers)
from .conftest import trainer_job

pytestmark = pytest.mark.subprocess


def test_an_epoch_budget_becomes_the_expected_steps_and_is_reported(transformed, tmp_path):
    """The train split holds 12 examples (3 rows x4); 2.5 epochs in batches of 5 are
    30 examples: 6 steps, whatever train_steps (1,000) says."""
    config = TrainerConfig.from_dict({
        "batch_size": 5, "train_epochs": 2.5, "eval_every": 0, "early_stopping_patience": 0,
        "checkpoint_every": 0, "architecture": {"hidden_units": [4], "tower_units": [2]}})
    job = trainer_job(transformed, tmp_path, config, 1000)
    (report,) = resume._finish(resume._start(tmp_path, "epochs", job, tmp_path / "root"))
    assert report["steps"] == 6
    assert report["budget"] == {"train_epochs": 2.5, "train_examples": 12, "batch_size": 5,
                                "train_steps": 6}
