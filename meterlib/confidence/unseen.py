"""Whether a photo shows a meter type the model never learnt: feature distance and energy, fused by their ranks.

Two scores say how known a photo looks, both higher for known types: the energy of its logits
(``selective.energy_score``) and the cosine similarity of its features to the k-th nearest training
photo (``model.network.Scoring``). Each becomes a conformal p-value by its rank among known
calibration photos (val photos, scored by the served model), and the smaller of the two is ranked
once more among the calibration photos' own (leave-one-out) values. The result is one p-value whose
threshold ``alpha`` is the share of known photos flagged ``unseen_type``: it states its false-alarm
rate directly (exchangeability assumed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from meterlib.confidence import selective
from meterlib.errors import SettingsError

DEFAULT_ALPHA = 0.05  # share of known photos flagged unseen_type
SCORES = ("energy", "similarity")  # the field's sorted calibration values, one list per score
# How the two p-values combine into one statistic (low: unseen); chosen on benchmarks/bench_unseen.py's rotations.
FUSIONS = {"product": np.multiply, "min": np.minimum}
DEFAULT_FUSION = "product"


def p_values(calibration, values) -> np.ndarray:
    """Conformal p-values of ``values``: (1 + calibration values at or below each) / (n + 1); low: unlike them."""
    calibration = np.sort(np.asarray(calibration, dtype=np.float64))
    at_or_below = np.searchsorted(calibration, np.asarray(values, dtype=np.float64), side="right")
    return (1 + at_or_below) / (len(calibration) + 1)


def _leave_one_out_p_values(values: np.ndarray) -> np.ndarray:
    """Each calibration value's p-value among the others: (values at or below it, itself included) / n."""
    ordered = np.sort(values)
    return np.searchsorted(ordered, values, side="right") / len(values)


@dataclass(frozen=True)
class UnseenRule:
    """The fitted unseen-type rule: the calibration photos' sorted scores and the false-alarm rate ``alpha``."""

    energy: tuple[float, ...]  # known calibration photos' energies, sorted
    similarity: tuple[float, ...]  # their similarities to the k-th nearest training photo, sorted
    fused: tuple[float, ...]  # their fused statistics (leave-one-out), sorted
    alpha: float = DEFAULT_ALPHA
    fusion: str = DEFAULT_FUSION  # a key of FUSIONS

    def __post_init__(self):
        for name in ("energy", "similarity", "fused"):
            object.__setattr__(self, name, tuple(sorted(map(float, getattr(self, name)))))
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.fusion not in FUSIONS:
            raise SettingsError(f"unseen-type fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")

    @property
    def photos(self) -> int:
        return len(self.energy)

    def p_value(self, logits, similarity, *, temperature: float) -> np.ndarray:
        """The fused p-value of each photo (n,) from its logits (n, classes) and similarity (n,); low: unseen."""
        statistic = FUSIONS[self.fusion](p_values(self.energy, selective.energy_score(logits, temperature=temperature)),
                                         p_values(self.similarity, similarity))
        return p_values(self.fused, statistic)

    def is_unseen(self, p_value) -> np.ndarray:
        """Whether each fused p-value flags its photo as a type the model never learnt."""
        return np.asarray(p_value) <= self.alpha

    def to_field(self) -> dict:
        """The model file's ``unseen_type`` field (plain lists, so ONNX metadata can carry it)."""
        return {"energy": list(self.energy), "similarity": list(self.similarity), "fused": list(self.fused),
                "alpha": self.alpha, "fusion": self.fusion}

    @classmethod
    def from_field(cls, value: Mapping) -> "UnseenRule":
        return cls(energy=value["energy"], similarity=value["similarity"], fused=value["fused"],
                   alpha=value["alpha"], fusion=value["fusion"])


def fused_statistic(energy: np.ndarray, similarity: np.ndarray, *, fusion: str = DEFAULT_FUSION) -> np.ndarray:
    """Calibration photos' fused statistic: their two leave-one-out p-values combined by ``fusion``."""
    return FUSIONS[fusion](_leave_one_out_p_values(energy), _leave_one_out_p_values(similarity))


def fit_unseen_rule(logits, similarity, *, temperature: float, alpha: float = DEFAULT_ALPHA,
                    min_photos: int, fusion: str = DEFAULT_FUSION) -> UnseenRule | None:
    """The rule fitted on known calibration photos' logits and similarities; None with fewer than ``min_photos``.

    With n photos the smallest p-value is 1 / (n + 1), so ``alpha`` must be at least that for
    anything to be flagged: a SettingsError says so instead of a rule that never fires.
    """
    if not 0 < alpha < 1:
        raise SettingsError(f"unseen_alpha must be between 0 and 1, got {alpha!r}")
    if fusion not in FUSIONS:
        raise SettingsError(f"unseen-type fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    energy = selective.energy_score(np.asarray(logits, dtype=np.float64), temperature=temperature)
    similarity = np.asarray(similarity, dtype=np.float64).reshape(-1)
    if len(energy) != len(similarity):
        raise SettingsError(f"need one similarity per logits row, got {len(similarity)} for {len(energy)}")
    if len(energy) < max(min_photos, 1):
        return None
    if alpha < 1 / (len(energy) + 1):
        raise SettingsError(f"unseen_alpha {alpha:g} is below 1/{len(energy) + 1}, the smallest p-value "
                            f"{len(energy)} calibration photos can give: nothing would be flagged")
    return UnseenRule(energy=energy, similarity=similarity, fused=fused_statistic(energy, similarity, fusion=fusion),
                      alpha=alpha, fusion=fusion)


def field_problem(value) -> str:
    """What is wrong with an ``unseen_type`` field; '' when it is absent or fine."""
    if value is None:
        return ""
    keys = (*SCORES, "fused", "alpha", "fusion")
    if not (isinstance(value, Mapping) and set(value) == set(keys)):
        return f"must be a dict with the keys {', '.join(keys)}"
    lists = [value[key] for key in (*SCORES, "fused")]
    if not all(isinstance(item, list) and item and all(_is_finite(v) for v in item) for item in lists):
        return "needs 'energy', 'similarity' and 'fused' as non-empty lists of finite numbers"
    if len({len(item) for item in lists}) != 1:
        return "needs 'energy', 'similarity' and 'fused' of one length (one entry per calibration photo)"
    if not (_is_finite(value["alpha"]) and 0 < value["alpha"] < 1):
        return "needs 'alpha' as a number between 0 and 1"
    if value["fusion"] not in FUSIONS:
        return f"needs 'fusion' as one of {', '.join(FUSIONS)}"
    return ""


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
