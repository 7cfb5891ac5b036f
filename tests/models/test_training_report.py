"""The training report names what trained: the family of the built network, for the
multi-task model and for a single-task baseline of every family."""
import json

import pytest

from tfx_mtl.models import architecture, synthetic_input

from loop_support import data as _data, loop as _loop


@pytest.mark.parametrize("family", architecture.ARCHITECTURES)
def test_the_report_names_the_family_that_trained_for_the_model_and_a_baseline(family,
                                                                             tmp_path):
    spec, arrays = _data(tasks=2, rows=64)
    one = spec.restricted_to("task_2")
    for trained, tasks in ((spec, ["task_1", "task_2"]), (one, ["task_2"])):
        result = _loop(trained, arrays, architecture={"name": family}, eval_every=0,
                       early_stopping_patience=0).fit(synthetic_input.dataset(arrays, 32), 1)
        with open(result.write(str(tmp_path / "_".join(tasks)))) as f:
            report = json.load(f)
        assert (report["family"], report["architecture"]["name"], report["tasks"]) == (
            family, family, tasks)
