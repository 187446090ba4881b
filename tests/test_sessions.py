"""ONNX Runtime sessions as slimkit opens them, and how a data set's inputs become a graph's:
the one rule ONNX Runtime and OpenVINO share."""

from __future__ import annotations

import pytest
import torch

from slimkit.errors import ShapeMismatchError
from slimkit.sessions import arrangement, session_options

IDS = torch.tensor([[5, 6, 7]])
MASK = torch.ones_like(IDS)


def test_inputs_go_by_name_in_the_graphs_order():
    arrange = arrangement(["attention_mask", "input_ids"], ["input_ids", "attention_mask"])
    got = arrange([IDS, MASK])
    assert got[0] is MASK and got[1] is IDS


def test_a_token_type_input_the_data_lacks_is_fed_zeros():
    wanted = ["input_ids", "token_type_ids", "attention_mask"]
    got = arrangement(wanted, ["input_ids", "attention_mask"])([IDS, MASK])
    assert got[0] is IDS and got[2] is MASK
    assert got[1].tolist() == [[0, 0, 0]] and got[1].dtype == IDS.dtype


def test_other_names_go_by_position_and_other_counts_are_named():
    pixels = torch.zeros(1, 1, 4, 4)
    assert arrangement(["input_1"], ["pixels"])([pixels])[0] is pixels
    with pytest.raises(ShapeMismatchError, match=r"takes inputs \['a', 'b'\].*gives \['pixels'\]"):
        arrangement(["a", "b"], ["pixels"])


def test_a_sessions_threads_stop_spinning_when_its_run_returns():
    # left spinning, they take the cores of the next model the process runs
    options = session_options(threads=2)
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
