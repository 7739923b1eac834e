import pytest
import torch
from torch import nn

from freehub.task_model import ModelSpec, TaskModel, canonical_label_key


@pytest.mark.parametrize(
    ("a", "b"),
    [("Golden Retriever", "golden_retriever"), ("GREEK CAPITAL LETTER OMEGA", "greek capital letter omega"), ("Café", "cafe")],
)
def test_canonical_key_matches_spellings_of_one_class(a, b):
    assert canonical_label_key(a) == canonical_label_key(b) is not None


@pytest.mark.parametrize("name", ["LABEL_3", "label 12", "7", "class_0", ""])
def test_generic_labels_stay_model_local(name):
    assert canonical_label_key(name) is None


def _spec(**changes):
    base = dict(
        library="torch", architecture="probe", label_names=("a", "b", "c"),
        input_size=(1, 8, 8), mean=(0.5,), std=(0.25,),
    )
    base.update(changes)
    return ModelSpec(**base)


class _Recorder(nn.Module):
    """Returns the mean of each preprocessed image as three logits, and keeps the last input."""

    def forward(self, x):
        self.seen = x
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) * torch.tensor([1.0, 2.0, 3.0])


def test_preprocess_converts_channels_resizes_and_normalises():
    model = TaskModel(network=_Recorder(), spec=_spec())
    model(torch.full((2, 3, 16, 16), 0.75))
    assert model.network.seen.shape == (2, 1, 8, 8)
    assert torch.allclose(model.network.seen, torch.full((2, 1, 8, 8), 1.0))


def test_head_slice_selects_rows_and_names():
    model = TaskModel(network=_Recorder(), spec=_spec())
    sliced = model.head_slice([2, 0])
    images = torch.rand(4, 3, 8, 8)
    assert sliced.label_names == ("c", "a")
    assert torch.equal(sliced(images), model(images)[:, [2, 0]])


def test_spec_round_trips_through_dict():
    spec = _spec(head_names=("fc.weight", "fc.bias"), feature_dim=16, extra={"k": 1})
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_mean_std_must_match_channels():
    with pytest.raises(ValueError):
        TaskModel(network=_Recorder(), spec=_spec(mean=(0.5, 0.5, 0.5)))
