"""The fused unseen-type rule: conformal p-values, their fusion, the false-alarm rate it states, its field."""

import numpy as np
import pytest

from meterlib.confidence import selective, unseen
from meterlib.errors import SettingsError

N_CLASSES = 5


def _known(rng, n):
    """Logits of known-type photos (one large logit) and their similarities to the nearest training photo."""
    logits = rng.normal(0, 1, (n, N_CLASSES))
    logits[np.arange(n), rng.integers(0, N_CLASSES, n)] += 6
    return logits, rng.normal(0.8, 0.05, n)


def test_p_values_count_the_calibration_values_at_or_below_each_value():
    p = unseen.p_values([3.0, 1.0, 2.0, 2.0], [0.5, 2.0, 2.5, 9.0])
    assert p.tolist() == [1 / 5, 4 / 5, 4 / 5, 5 / 5]


@pytest.mark.parametrize("fusion", unseen.FUSIONS)
def test_the_rule_flags_about_alpha_of_new_known_photos_and_says_so(fusion):
    rng = np.random.default_rng(0)
    rule = unseen.fit_unseen_rule(*_known(rng, 2000), temperature=1.0, alpha=0.05, min_photos=30, fusion=fusion)
    logits, similarity = _known(rng, 20000)
    flagged = rule.is_unseen(rule.p_value(logits, similarity, temperature=1.0))
    assert flagged.mean() == pytest.approx(0.05, abs=0.01)


def test_a_photo_far_from_every_training_photo_is_flagged_even_with_confident_logits():
    # The feature score catches what the logits miss: without the fusion this photo would pass.
    rng = np.random.default_rng(1)
    rule = unseen.fit_unseen_rule(*_known(rng, 500), temperature=1.0, alpha=0.05, min_photos=30)
    logits, _ = _known(rng, 200)
    far = rule.p_value(logits, np.full(200, 0.3), temperature=1.0)
    near = rule.p_value(logits, np.full(200, 0.95), temperature=1.0)
    assert rule.is_unseen(far).all() and rule.is_unseen(near).mean() < 0.1  # near: only the low-energy ones


def test_flat_logits_are_flagged_even_when_a_training_photo_is_near():
    rng = np.random.default_rng(2)
    rule = unseen.fit_unseen_rule(*_known(rng, 500), temperature=1.0, alpha=0.05, min_photos=30)
    p = rule.p_value(np.zeros((10, N_CLASSES)), np.full(10, 0.8), temperature=1.0)
    assert rule.is_unseen(p).all()


@pytest.mark.parametrize("fusion, expected", [("min", [0.25, 0.25, 0.5, 0.75]),
                                              ("product", [0.25, 0.125, 0.375, 0.75])])
def test_the_fused_statistic_combines_the_leave_one_out_p_values(fusion, expected):
    energy, similarity = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.9, 0.1, 0.5, 0.7])
    assert unseen.fused_statistic(energy, similarity, fusion=fusion).tolist() == pytest.approx(expected)


def test_an_unknown_fusion_is_refused():
    rng = np.random.default_rng(9)
    with pytest.raises(SettingsError, match="fusion must be one of product, min"):
        unseen.fit_unseen_rule(*_known(rng, 40), temperature=1.0, min_photos=30, fusion="max")


def test_the_rule_uses_the_energy_at_its_temperature():
    rng = np.random.default_rng(3)
    logits, similarity = _known(rng, 100)
    rule = unseen.fit_unseen_rule(logits, similarity, temperature=2.0, min_photos=30)
    assert rule.energy == tuple(sorted(selective.energy_score(logits, temperature=2.0)))


def test_too_few_calibration_photos_give_no_rule():
    rng = np.random.default_rng(4)
    assert unseen.fit_unseen_rule(*_known(rng, 29), temperature=1.0, min_photos=30) is None


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_must_lie_between_0_and_1(alpha):
    rng = np.random.default_rng(5)
    with pytest.raises(SettingsError, match="unseen_alpha"):
        unseen.fit_unseen_rule(*_known(rng, 50), temperature=1.0, alpha=alpha, min_photos=30)


def test_an_alpha_below_the_smallest_possible_p_value_is_refused():
    rng = np.random.default_rng(6)
    with pytest.raises(SettingsError, match="nothing would be flagged"):
        unseen.fit_unseen_rule(*_known(rng, 40), temperature=1.0, alpha=0.01, min_photos=30)


def test_one_similarity_per_photo_is_required():
    rng = np.random.default_rng(7)
    logits, similarity = _known(rng, 40)
    with pytest.raises(SettingsError, match="one similarity per logits row"):
        unseen.fit_unseen_rule(logits, similarity[:-1], temperature=1.0, min_photos=30)


def test_the_field_round_trips_and_is_checked():
    rng = np.random.default_rng(8)
    rule = unseen.fit_unseen_rule(*_known(rng, 40), temperature=1.0, min_photos=30)
    field = rule.to_field()
    assert unseen.field_problem(field) == "" and unseen.UnseenRule.from_field(field) == rule
    assert unseen.field_problem(None) == ""


@pytest.mark.parametrize("change, message", [
    (lambda f: {k: v for k, v in f.items() if k != "fused"}, "must be a dict with the keys"),
    (lambda f: {**f, "energy": []}, "non-empty lists of finite numbers"),
    (lambda f: {**f, "similarity": [float("nan")] * 3}, "non-empty lists of finite numbers"),
    (lambda f: {**f, "fused": f["fused"][:-1]}, "of one length"),
    (lambda f: {**f, "alpha": 1.0}, "'alpha' as a number between 0 and 1"),
    (lambda f: {**f, "alpha": True}, "'alpha' as a number between 0 and 1"),
    (lambda f: {**f, "fusion": "max"}, "'fusion' as one of product, min"),
])
def test_a_malformed_field_says_what_is_wrong(change, message):
    field = {"energy": [1.0, 2.0, 3.0], "similarity": [0.5, 0.6, 0.7], "fused": [0.3, 0.6, 1.0], "alpha": 0.05,
             "fusion": "product"}
    assert message in unseen.field_problem(change(field))
