"""The classifier's parts: the tail, the pooled part and the features are slices of one model."""

import pytest

torch = pytest.importorskip("torch")

from meterlib.model import backbones, network  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return backbones.build_classifier("random", 4, pretrained=False).eval()


def test_the_parts_compose_into_the_whole_classifier(model):
    photos = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        activations = model.frozen_part(photos)
        logits = model(photos)
        torch.testing.assert_close(network.tail(model)(activations), logits)
        torch.testing.assert_close(model.head(network.pooled(model)(activations)), logits)
        torch.testing.assert_close(model.head(network.features(model)(photos)), logits)


def test_the_parts_share_the_model_s_weights(model):
    # Training the tail must train the served model, not a copy.
    assert network.tail(model).head is model.head
    assert network.pooled(model).last_block is model.last_block


def test_a_batched_pass_equals_one_pass_and_widens_bfloat16(model):
    activations = model.frozen_part(torch.randn(5, 3, 64, 64)).detach()
    whole = network.tail(model)(activations).detach()
    torch.testing.assert_close(network.batched(network.tail(model), activations, batch_size=2, device="cpu"), whole)
    low = activations.to(torch.bfloat16)
    out = network.batched(network.tail(model), low, batch_size=3, device="cpu")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, network.tail(model)(low.float()).detach())


def test_image_batches_go_channels_last():
    moved = network.to_device(torch.zeros(1, 3, 4, 4, dtype=torch.bfloat16), "cpu")
    assert moved.dtype == torch.float32 and moved.is_contiguous(memory_format=torch.channels_last)
