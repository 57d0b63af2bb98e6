"""Why 03's served answers name no type: the unseen-type scores, their AUROCs, each reason's share and limits."""

import math

import numpy as np
import pandas as pd

from meterlib.confidence import photo_limits, selective, unseen
from meterlib.confidence.fitted import Calibration
from meterlib.evaluate import reasons
from meterlib.serve.predictor import Evidence, Prediction

RNG = np.random.default_rng(0)
VAL_LOGITS = RNG.normal(0, 1, (40, 3)) + np.eye(3)[RNG.integers(0, 3, 40)] * 5
VAL_SIMILARITY = RNG.normal(0.8, 0.05, 40)
RULE = unseen.fit_unseen_rule(VAL_LOGITS, VAL_SIMILARITY, temperature=2.0, alpha=0.1, min_photos=30)
LIMITS = photo_limits.PhotoLimits(brightness=0.2, contrast=0.1, sharpness=50.0, short_side=100)


def _quality(brightness, n):
    return [{"brightness": brightness, "contrast": 0.3, "sharpness": 200.0, "short_side": 300} for _ in range(n)]


# Known photos: confident logits near training photos; unseen ones: flat logits far from them.
KNOWN = Evidence(VAL_LOGITS[:10] * 1.5, np.full(10, 0.9), np.zeros(10, dtype=np.int64), _quality(0.5, 10))
UNSEEN = Evidence(np.zeros((4, 3)) + [[0.1, 0.0, 0.0]], np.full(4, 0.4), np.zeros(4, dtype=np.int64),
                  _quality(0.1, 4))


def _answer(label, reason=None):
    return Prediction(label="UNKNOWN" if reason else label, unknown=reason is not None, confidence=0.5,
                      top_classes=[label, "other"], top_probabilities=[0.5, 0.3], prediction_set=[label],
                      reason=reason)


def test_scores_are_those_the_calibration_can_compute_at_its_temperature():
    plain = Calibration(temperature=2.0)
    assert list(reasons.scores(Evidence(KNOWN.logits), plain)) == [reasons.MAX_SOFTMAX, reasons.ENERGY]
    assert list(reasons.scores(KNOWN, plain)) == [reasons.MAX_SOFTMAX, reasons.ENERGY, reasons.SIMILARITY]
    found = reasons.scores(KNOWN, Calibration(temperature=2.0, unseen_type=RULE))
    assert list(found) == list(reasons.SCORES)
    np.testing.assert_allclose(found[reasons.ENERGY], selective.energy_score(KNOWN.logits, temperature=2.0))
    np.testing.assert_allclose(found[reasons.MAX_SOFTMAX], selective.max_softmax_score(KNOWN.logits, temperature=2.0))
    np.testing.assert_array_equal(found[reasons.SIMILARITY], KNOWN.similarity)
    np.testing.assert_array_equal(found[reasons.FUSED],
                                  RULE.p_value(KNOWN.logits, KNOWN.similarity, temperature=2.0))


def test_every_score_ranks_known_photos_above_unseen_ones_here():
    pairs = reasons.unseen_scores(KNOWN, UNSEEN, Calibration(temperature=2.0, unseen_type=RULE))
    assert [len(known) for known, _ in pairs.values()] == [10] * 4
    assert [len(other) for _, other in pairs.values()] == [4] * 4
    assert reasons.aurocs(pairs) == dict.fromkeys(reasons.SCORES, 1.0)
    # Swapped groups read 0: the scores are higher for known photos, as separation_auroc expects.
    assert reasons.aurocs({name: (b, a) for name, (a, b) in pairs.items()}) == dict.fromkeys(reasons.SCORES, 0.0)
    without_photos = reasons.unseen_scores(KNOWN, Evidence(np.empty((0, 3))), Calibration(unseen_type=RULE))
    assert list(without_photos) == [reasons.MAX_SOFTMAX, reasons.ENERGY]  # no similarity of unseen photos
    assert all(math.isnan(v) for v in reasons.aurocs(without_photos).values())


def test_reason_summary_counts_each_reason_and_scores_the_answered():
    answers = [_answer("a"), _answer("b"), _answer("a", "unsure"), _answer("a", "unseen_type"),
               _answer("a", "poor_photo"), _answer("a", "unsure"), _answer("b"), _answer("a")]
    truth = ["a", "a", "a", "b", "a", "a", "b", "a"]
    summary = reasons.reason_summary(answers, truth)
    assert summary["reasons"] == {"poor_photo": 1 / 8, "unseen_type": 1 / 8, "unsure": 2 / 8}
    assert summary["answered"] == 4 / 8
    assert summary["accuracy_answered"] == 3 / 4  # the answered "b" for a true "a" is wrong
    empty = reasons.reason_summary([], [])
    assert all(math.isnan(v) for v in (*empty["reasons"].values(), empty["answered"], empty["accuracy_answered"]))


def test_reason_table_puts_the_splits_side_by_side():
    test = reasons.reason_summary([_answer("a"), _answer("a", "unsure")], ["a", "a"])
    other = reasons.reason_summary([_answer("a", "unseen_type"), _answer("a")], ["new", "new"])
    table = reasons.reason_table({"test": test, "unseen": other})
    assert table.columns.tolist() == ["test", "unseen"]
    assert table.index.tolist() == ["poor_photo", "unseen_type", "unsure", "answered", "accuracy of answered"]
    pd.testing.assert_series_equal(table["unseen"], pd.Series([0.0, 0.5, 0.0, 0.5, 0.0], index=table.index,
                                                              name="unseen"))
    assert table.loc["unsure", "test"] == 0.5 and table.loc["accuracy of answered", "test"] == 1.0


def test_reason_scores_give_each_reason_its_scores_and_limits():
    served = Calibration(temperature=2.0, unknown_threshold=0.7, unseen_type=RULE, photo_limits=LIMITS)
    found = reasons.reason_scores(KNOWN, UNSEEN, served)
    assert list(found) == ["poor_photo", "unseen_type", "unsure"]
    measures, limits = found["poor_photo"]
    assert limits == {"brightness": 0.2, "contrast": 0.1, "sharpness": 50.0, "short_side": 100.0}
    assert list(measures) == list(photo_limits.MEASURES)
    np.testing.assert_array_equal(measures["brightness"][0], np.full(10, 0.5))
    np.testing.assert_array_equal(measures["brightness"][1], np.full(4, 0.1))
    p_values, alpha = found["unseen_type"]
    assert list(p_values) == [reasons.FUSED] and alpha == {reasons.FUSED: RULE.alpha}
    np.testing.assert_array_equal(p_values[reasons.FUSED][1],
                                  RULE.p_value(UNSEEN.logits, UNSEEN.similarity, temperature=2.0))
    confidence, threshold = found["unsure"]
    assert threshold == {"calibrated confidence": 0.7}
    np.testing.assert_allclose(confidence["calibrated confidence"][0],
                               selective.max_softmax_score(KNOWN.logits, temperature=2.0))
    # Without a rule or limits only the UNKNOWN threshold can refuse.
    assert list(reasons.reason_scores(KNOWN, UNSEEN, Calibration())) == ["unsure"]
    assert list(reasons.reason_scores(Evidence(KNOWN.logits), Evidence(UNSEEN.logits), served)) == ["unsure"]


def test_the_scores_reason_on_the_reasons_of_the_predictor():
    """The limits drawn are the ones the Predictor refuses with: an unseen photo below them gets the reason."""
    from meterlib.serve import Predictor

    served = Calibration(temperature=2.0, unknown_threshold=0.0, unseen_type=RULE)
    predictor = Predictor(model=None, class_names=["a", "b", "c"], image_size=32, mean=[0.5] * 3, std=[0.25] * 3,
                          calibration=served)
    (_, unseen_p), = reasons.reason_scores(KNOWN, UNSEEN, served)["unseen_type"][0].values()
    flagged = [answer.reason == "unseen_type" for answer in predictor.predictions(UNSEEN)]
    assert flagged == (unseen_p <= RULE.alpha).tolist() and any(flagged)

