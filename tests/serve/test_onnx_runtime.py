"""ONNX Runtime serving: the graph's outputs, one or three, checked against what the Predictor reads."""

import numpy as np
import pytest
from PIL import Image

from meterlib.errors import ModelFileError
from meterlib.export import onnx_files
from meterlib.model import checkpoint, onnx_metadata
from meterlib.serve import Predictor, onnx_runtime

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

SIMILARITY = (onnx_metadata.SIMILARITY_NAME, TensorProto.FLOAT, ["batch"])
NEAREST = (onnx_metadata.NEAREST_CLASS_NAME, TensorProto.INT64, ["batch"])


def _model(tmp_path, random_checkpoint, *extra) -> str:
    """A hand-made graph with the random checkpoint's metadata: logits = the mean of each colour channel
    (3 classes), then ``extra`` outputs (name, type, shape): the largest logit as float, its index as int64."""
    nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])]
    for index, (name, kind, shape) in enumerate(extra):
        op = "ArgMax" if kind == TensorProto.INT64 else "ReduceMax"
        keep = int(len(shape) == 2)
        nodes.append(helper.make_node(op, ["logits"], [name], keepdims=keep,
                                      **({"axis": 1} if op == "ArgMax" else {"axes": [1]})))
        outputs.append(helper.make_tensor_value_info(name, kind, shape))
    graph = helper.make_graph(nodes, "scoring", [helper.make_tensor_value_info(
        onnx_metadata.INPUT_NAME, TensorProto.FLOAT, ["batch", 3, 32, 32])], outputs)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    fields = onnx_metadata.fields_from_checkpoint(checkpoint.load(random_checkpoint), precision="float32")
    return str(onnx_files.write_with_metadata(proto, tmp_path / "model.onnx", fields))


def _photos():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(5)]


def test_a_graph_with_similarity_gives_all_three_outputs(tmp_path, random_checkpoint):
    fields, model = onnx_runtime.load(_model(tmp_path, random_checkpoint, SIMILARITY, NEAREST))
    assert model.has_similarity
    preprocessing = dict(image_size=32, mean=fields["mean"], std=fields["std"])
    logits, similarity, nearest = model.outputs(_photos(), batch_size=2, **preprocessing)
    assert logits.shape == (5, 3) and similarity.shape == (5,) and nearest.dtype == np.int64
    np.testing.assert_allclose(similarity, logits.max(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(nearest, logits.argmax(axis=1))
    empty = model.outputs([], **preprocessing)
    assert [item.shape for item in empty] == [(0, 3), (0,), (0,)] and empty[2].dtype == np.int64


def test_a_graph_of_logits_alone_predicts_without_the_unseen_type_score(tmp_path, random_checkpoint):
    predictor = Predictor.from_onnx(_model(tmp_path, random_checkpoint))
    assert not predictor.has_similarity and "no reference features" in predictor.unseen_type_note
    evidence = predictor.evidence(_photos())
    assert evidence.logits.shape == (5, 3) and evidence.similarity is None


@pytest.mark.parametrize("extra", [
    [SIMILARITY],  # two outputs
    [(onnx_metadata.SIMILARITY_NAME, TensorProto.FLOAT, ["batch", 1]), NEAREST],  # not one per photo
    [SIMILARITY, (onnx_metadata.NEAREST_CLASS_NAME, TensorProto.FLOAT, ["batch"])],  # class index not int64
    [SIMILARITY, (onnx_metadata.NEAREST_CLASS_NAME, TensorProto.INT64, [7])],  # another batch
    [NEAREST, SIMILARITY],  # swapped
    [("distance", TensorProto.FLOAT, ["batch"]), NEAREST],  # renamed
])
def test_a_graph_whose_extra_outputs_are_not_the_similarity_is_refused(tmp_path, random_checkpoint, extra):
    path = _model(tmp_path, random_checkpoint, *extra)
    with pytest.raises(ModelFileError) as caught:
        Predictor.from_onnx(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the network's output")
    if len(extra) == 1:
        assert "is not one logit for each of the 3 classes" in message
    else:
        assert message.endswith("are not the logits, 'similarity' (float32, one per photo) and "
                                "'nearest_class' (int64, one per photo)")
