"""The ONNX files of a checkpoint with reference features: the unseen-type score as PyTorch gives it, float32
in INT8's similarity part."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from meterlib.confidence import photo_limits, unseen
from meterlib.errors import ExportError
from meterlib.export import check, onnx_files
from meterlib.model import backbones, checkpoint, inference, onnx_metadata, reference
from meterlib.serve import Predictor
from meterlib.serve.predictor import POOR_PHOTO, UNSEEN_TYPE

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SPEC = checkpoint.ModelSpec("random", ["zeta", "alpha", "mu"], 32, mean=(0.5,) * 3, std=(0.25,) * 3)


def _photos(folder, count: int, *, seed: int) -> list:
    """Noise photos (like one another) and, every third, a plain colour (unlike them); one too small."""
    rng = np.random.default_rng(seed)
    files = []
    for index in range(count):
        size = (40, 30) if index == 4 else (60, 70)
        pixels = (np.full((*size, 3), rng.integers(0, 256, 3), dtype=np.uint8) if index % 3 == 2
                  else rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        files.append(folder / f"photo {seed}-{index}.png")
        Image.fromarray(pixels).save(files[-1])
    return files


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A random checkpoint with reference features and an unseen-type rule fitted on val-like noise photos,
    its float32 export, and new photos; as notebooks 02 and 03 make them."""
    folder = tmp_path_factory.mktemp("scored")
    torch.manual_seed(0)
    model = backbones.build_classifier("random", 3, pretrained=False)
    training = [path for index, path in enumerate(_photos(folder, 18, seed=1)) if index % 3 != 2]
    features = reference.build(model, training, np.arange(len(training)) % 3, spec=SPEC)
    plain = checkpoint.save(folder / "plain.pt", model=model, spec=SPEC, reference_features=features)
    predictor = Predictor.from_checkpoint(plain)
    val = predictor.evidence([path for index, path in enumerate(_photos(folder, 30, seed=2)) if index % 3 != 2])
    rule = unseen.fit_unseen_rule(val.logits, val.similarity, temperature=1.5, alpha=0.1, min_photos=10)
    limits = photo_limits.PhotoLimits(brightness=0.0, contrast=0.0, sharpness=0.0, short_side=32)
    calibration = dataclasses.replace(predictor.calibration, temperature=1.5, unknown_threshold=0.4,
                                      unseen_type=rule, photo_limits=limits)
    path = checkpoint.save(folder / "model.pt", model=model, spec=SPEC, reference_features=features,
                           **calibration.to_fields())
    exported = onnx_files.write_float32(checkpoint.load(path), folder / "model.onnx", source=path)
    return path, exported, _photos(folder, 24, seed=3)


def test_float32_export_gives_the_unseen_type_score_as_pytorch(scored):
    path, exported, photos = scored
    assert [item.name for item in onnx.load(exported).graph.output] == list(reference.OUTPUTS)
    torch_predictor, onnx_predictor = Predictor.load(path, device="cpu"), Predictor.load(exported)
    assert onnx_predictor.has_similarity and onnx_predictor.unseen_type_note == ""
    assert onnx_predictor.calibration == torch_predictor.calibration
    expected, got = torch_predictor.evidence(photos, batch_size=5), onnx_predictor.evidence(photos, batch_size=5)
    np.testing.assert_allclose(got.similarity, expected.similarity, atol=1e-5)
    np.testing.assert_array_equal(got.nearest_class, expected.nearest_class)
    wanted, answers = torch_predictor.predict_many(photos), onnx_predictor.predict_many(photos)
    assert [(a.label, a.reason, a.detail) for a in answers] == [(a.label, a.reason, a.detail) for a in wanted]
    assert [a.unseen_p for a in answers] == pytest.approx([a.unseen_p for a in wanted], abs=1e-6)
    reasons = [a.reason for a in wanted]
    # Both answers occur (flagged unseen: mostly the plain colours), and the small photo is poor.
    assert reasons.count(UNSEEN_TYPE) >= 3 and reasons.count(UNSEEN_TYPE) <= 12 and reasons[4] == POOR_PHOTO
    outcomes = onnx_predictor.predict_each(photos, batch_size=7)
    assert [o.prediction.reason for o in outcomes] == reasons


def test_the_check_compares_similarities_and_answers(scored):
    path, exported, photos = scored
    pictures = inference.load_resized(photos, image_size=SPEC.image_size)
    torch_predictor, onnx_predictor = Predictor.load(path, device="cpu"), Predictor.load(exported)
    comparison = check.compare(torch_predictor, onnx_predictor, pictures, np.zeros(len(photos), dtype=np.int64))
    assert comparison.answer_agreement == 1.0 and comparison.agreement == 1.0
    assert 0 < comparison.max_similarity_difference <= check.SIMILARITY_TOLERANCE
    check.refuse_float32_difference(comparison, source=str(exported))
    # An export that answers other reasons (here: another unseen-type rule) is refused.
    stricter = onnx_predictor.with_calibration(dataclasses.replace(
        onnx_predictor.calibration, unseen_type=dataclasses.replace(onnx_predictor.calibration.unseen_type,
                                                                   alpha=0.5)))
    changed = check.compare(torch_predictor, stricter, pictures, np.zeros(len(photos), dtype=np.int64))
    assert changed.agreement == 1.0 and changed.answer_agreement < 1.0
    with pytest.raises(ExportError, match="with another answer or reason"):
        check.refuse_float32_difference(changed, source=str(exported))
    without = dataclasses.replace(torch_predictor, reference=None)
    with pytest.raises(ExportError, match="lacks the unseen-type similarity"):
        check.compare(torch_predictor, without, pictures, np.zeros(len(photos), dtype=np.int64))


def test_int8_quantises_the_network_and_keeps_the_similarity_in_float32(scored, tmp_path):
    path, exported, photos = scored
    content = checkpoint.load(path)
    pictures = inference.load_resized(photos, image_size=SPEC.image_size)
    fields = onnx_metadata.fields_from_checkpoint(content, precision="float32")
    int8 = onnx_files.quantize(exported, tmp_path / "model.int8.onnx", pictures=pictures, fields=fields)
    graph = onnx.load(int8).graph
    made_by = {name: node for node in graph.node for name in node.output}
    kinds = [node.op_type for node in graph.node]

    def read_quantised(node) -> bool:
        return any(made_by[name].op_type == "DequantizeLinear" for name in node.input if name in made_by)

    # The network: every convolution and the head read dequantised int8 weights and activations.
    assert all(read_quantised(node) for node in graph.node if node.op_type in ("Conv", "Gemm"))
    assert kinds.count("QuantizeLinear") > 10
    # The similarity: the reference features stay a float32 initializer; it reads the dequantised features
    # the head reads, and nothing after them is quantised.
    matmul = next(node for node in graph.node if node.op_type == "MatMul")
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    assert initializers[matmul.input[1]].data_type == onnx.TensorProto.FLOAT
    assert not any(read_quantised(node) for node in graph.node
                   if node.op_type in ("MatMul", "TopK", "GatherND", "Clip"))
    similarity_part = set(onnx_files.similarity_nodes(graph))
    assert {"MatMul", "TopK", "GatherND"} <= {node.op_type for node in graph.node if node.name in similarity_part}
    assert not any(made_by[name].name in similarity_part for node in graph.node
                   if node.op_type == "QuantizeLinear" for name in node.input if name in made_by)
    assert made_by[onnx_metadata.SIMILARITY_NAME].op_type == "Gather"  # not a DequantizeLinear
    served = Predictor.load(int8)
    assert served.has_similarity
    comparison = check.compare(Predictor.load(exported), served, pictures, np.zeros(len(photos), dtype=np.int64))
    assert 0 < comparison.max_similarity_difference < 0.1
