"""A whole training step on the simulated GPU: no host synchronisation, and a launch budget.

The simulation counts what a GPU would pay (minivit.sim). At cifar-tiny's size every kernel
launch costs the CPU about 5-10 microseconds, so the number of launches per step bounds the
step time whatever the batch: the budget is 600 per cifar-tiny training step (augmentation,
forward, loss, backward, clipping, AdamW, and the step's bookkeeping). The count does not
depend on the batch size, so a small batch measures it.
"""

import pytest
from synthetic_data import write_cifar_batches

from minivit import backend, sim
from minivit.config import PRESETS
from minivit.train import RECIPES, TrainConfig, Trainer

LAUNCH_BUDGET = 600


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar_batches(tmp_path_factory.mktemp("cifar"), per_batch=40, test_size=20)


@pytest.fixture
def simulated():
    backend.use("cupy-sim")
    yield
    backend.use("numpy")


def cifar_tiny_trainer(cifar, out, **changes):
    values = dict(RECIPES["cifar-tiny"], preset="cifar-tiny", model={"num_labels": 10}, data_dir=str(cifar),
                  out=str(out), backend="cupy-sim", batch_size=8, val_fraction=0.25, progress=False,
                  eval_batch_size=50)
    values.update(changes)
    return Trainer(TrainConfig(**values))


def test_a_cifar_tiny_step_makes_no_host_sync_and_stays_in_its_launch_budget(cifar, tmp_path, simulated):
    trainer = cifar_tiny_trainer(cifar, tmp_path / "run")
    assert trainer.model.config.hidden_size == PRESETS["cifar-tiny"]["hidden_size"]
    trainer.train_step()  # the first step makes the device copies of the normalisation
    backend.reset_sim_counters()
    with sim.phase("step"):
        trainer.train_step()
    counts = backend.sim_counters()
    assert counts["syncs"] == 0, f"host synchronisations inside a training step: {counts['sync_sites']}"
    assert counts["to_device"] == 0 and counts["to_host"] == 0, counts
    assert counts["launches"] <= LAUNCH_BUDGET, f"{counts['launches']} launches: {counts['by_kind']}"


def test_the_loss_is_read_only_every_sync_every_steps(cifar, tmp_path, simulated):
    trainer = cifar_tiny_trainer(cifar, tmp_path / "run", sync_every=5, max_steps=12, epochs=1)
    assert trainer.steps_per_epoch > 12
    backend.reset_sim_counters()
    result = trainer.run()
    sites = backend.sim_counters()["sync_sites"]
    assert result["step"] == 12
    drains = [site for site in sites if " in _drain " in site]
    assert len(drains) == 3  # after steps 5 and 10, and the last two steps at the stop
    training = [site for site in sites if " in train_step " in site or " in run " in site
                or "step.py:" in site]  # the Trainer's step, its loop, and the TrainStep it calls
    assert training == [], training
    # saving a checkpoint copies the flat buffers: the model's and each optimizer slot's, one copy each
    saves = [site for site in sites if " in state_dict " in site]
    assert len(saves) <= 2 * 3, saves


def test_the_augmentation_recipe_runs_on_the_simulation(cifar, tmp_path, simulated):
    trainer = cifar_tiny_trainer(cifar, tmp_path / "run", augment=RECIPES["cifar-gpu"]["augment"])
    trainer.train_step()
    backend.reset_sim_counters()
    trainer.train_step()
    counts = backend.sim_counters()
    assert counts["syncs"] == 0, counts["sync_sites"]
