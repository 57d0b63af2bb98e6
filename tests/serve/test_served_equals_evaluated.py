"""What notebook 03 measures is what the Predictor serves: the same answers, photo by photo."""

import numpy as np
import pandas as pd
import pytest

from meterlib.evaluate import scoring
from meterlib.serve import Predictor


@pytest.mark.slow
def test_03_results_equal_the_predictors_answers(smoke_run):
    results = pd.read_csv(smoke_run.results_csv, keep_default_na=False)
    predictor = Predictor.from_checkpoint(smoke_run.checkpoint)
    served = predictor.predict_many([smoke_run.dataset_dir / image for image in results["image"]])
    assert len(served) == len(results) > 0
    assert [p.top_classes[0] for p in served] == results["predicted_class"].tolist()
    assert [p.unknown for p in served] == results["unknown"].astype(bool).tolist()
    assert [scoring.SET_SEPARATOR.join(p.prediction_set) for p in served] == results["prediction_set"].tolist()
    np.testing.assert_allclose([p.confidence for p in served], results["calibrated_confidence"], atol=1e-6)
    top2 = [p.top_classes[1] if len(p.top_classes) > 1 else "" for p in served]
    assert top2 == results["top2_class"].tolist()
