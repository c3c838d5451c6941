"""Joint masking policies: per image-text pair, decide how much of each modality to mask.

A joint policy returns a `JointPlan`: per-row text masking rates and image masking ratios (0 =
leave that modality unmasked) plus the mode index of each row. The collator hands these rates to
the text and image policies. Registry: `JOINT_MASKING_POLICIES`.

* `independent` — every pair: text at the text policy's rate and image at the image policy's ratio.
* `maskvlm` — Kwon et al. (MaskVLM): by default one modality per pair, chosen with `text_prob`
  (0.5): text masked at `text_rate` (0.3) with the image intact, or image masked at
  `image_ratio` (0.6) with the text intact. `both_prob` (0.0) masks both at once. Modes:
  ("text", "image", "both").
* `mlim` — Arici et al. (MLIM) modality-aware masking: each pair gets one of heavy-image,
  heavy-text or light-both masking. **The paper's exact rates and mode probabilities are not known
  to us**; our defaults, chosen so that each modality must often be recovered from the other, are
  heavy_image = (text 0.0, image 0.75), heavy_text = (text 0.5, image 0.0),
  light_both = (text 0.15, image 0.25), each mode with probability 1/3. All configurable.

`text_rate` / `image_ratio` set to None mean "the text / image policy's own rate".
"""

from dataclasses import dataclass

import torch

from .masking_primitives import sample_modes


@dataclass
class JointPlan:
    """Per-row masking plan: `text_rate` (B,), `image_ratio` (B,), `mode` (B,) long into `mode_names`."""

    text_rate: torch.Tensor
    image_ratio: torch.Tensor
    mode: torch.Tensor
    mode_names: tuple[str, ...]


class JointMaskingPolicy:
    """Base class: `policy(batch_size, generator, text_rate, image_ratio) -> JointPlan`.

    `text_rate` / `image_ratio` are the text and image policies' own rates, used where the joint
    policy leaves a rate unset (None).
    """

    mode_names: tuple[str, ...] = ()

    def __call__(self, batch_size: int, generator: torch.Generator, text_rate: float, image_ratio: float) -> JointPlan:
        raise NotImplementedError

    @staticmethod
    def _plan(mode, table, mode_names) -> JointPlan:
        """Rows of `table` ((M, 2) float: text rate, image ratio per mode) picked by `mode` (B,)."""
        rates = table[mode]  # (B, 2)
        return JointPlan(rates[:, 0].clone(), rates[:, 1].clone(), mode, mode_names)


class IndependentJointMasking(JointMaskingPolicy):
    """Mask both modalities of every pair at the text and image policies' own rates."""

    mode_names = ("both",)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"

    def __call__(self, batch_size, generator, text_rate, image_ratio):
        mode = torch.zeros(batch_size, dtype=torch.long)
        return self._plan(mode, torch.tensor([[text_rate, image_ratio]], dtype=torch.float32), self.mode_names)


class MaskVLMJointMasking(JointMaskingPolicy):
    """MaskVLM: mask the text OR the image of each pair (or both with `both_prob`).

    Args:
        text_rate: text masking rate in text mode (default 0.3; None = the text policy's rate).
        image_ratio: image masking ratio in image mode (default 0.6; None = the image policy's).
        text_prob: probability of text mode among single-modality pairs (default 0.5).
        both_prob: probability of masking both modalities of a pair (default 0.0).
    """

    mode_names = ("text", "image", "both")

    def __init__(
        self,
        text_rate: float | None = 0.3,
        image_ratio: float | None = 0.6,
        text_prob: float = 0.5,
        both_prob: float = 0.0,
    ):
        if not (0.0 <= text_prob <= 1.0 and 0.0 <= both_prob <= 1.0):
            raise ValueError("text_prob and both_prob must be probabilities")
        self.text_rate = text_rate
        self.image_ratio = image_ratio
        self.text_prob = text_prob
        self.both_prob = both_prob

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(text_rate={self.text_rate}, image_ratio={self.image_ratio}, "
            f"text_prob={self.text_prob}, both_prob={self.both_prob})"
        )

    def mode_probs(self) -> torch.Tensor:
        """(3,) probabilities of the modes text, image, both."""
        single = 1.0 - self.both_prob
        return torch.tensor([single * self.text_prob, single * (1.0 - self.text_prob), self.both_prob])

    def __call__(self, batch_size, generator, text_rate, image_ratio):
        t = text_rate if self.text_rate is None else self.text_rate
        i = image_ratio if self.image_ratio is None else self.image_ratio
        table = torch.tensor([[t, 0.0], [0.0, i], [t, i]], dtype=torch.float32)
        mode = sample_modes(batch_size, self.mode_probs(), generator)
        return self._plan(mode, table, self.mode_names)


MLIM_DEFAULT_MODES = {
    "heavy_image": (0.0, 0.75),
    "heavy_text": (0.5, 0.0),
    "light_both": (0.15, 0.25),
}


class MLIMJointMasking(JointMaskingPolicy):
    """MLIM modality-aware masking: per pair one of heavy-image, heavy-text, light-both.

    Args:
        modes: {name: (text_rate, image_ratio)}; defaults `MLIM_DEFAULT_MODES` (our choice, see
            the module docstring).
        mode_probs: probability of each mode, in the order of `modes` (default uniform).
    """

    def __init__(self, modes: dict | None = None, mode_probs=None):
        self.modes = dict(modes or MLIM_DEFAULT_MODES)
        self.mode_names = tuple(self.modes)
        probs = (
            torch.full((len(self.modes),), 1.0 / len(self.modes))
            if mode_probs is None
            else torch.tensor(mode_probs, dtype=torch.float32)
        )
        if probs.shape != (len(self.modes),) or (probs < 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
            raise ValueError(f"mode_probs must be {len(self.modes)} probabilities summing to 1, got {mode_probs}")
        self.mode_probs = probs

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(modes={self.modes}, mode_probs={[round(p, 4) for p in self.mode_probs.tolist()]})"

    def __call__(self, batch_size, generator, text_rate, image_ratio):
        table = torch.tensor(list(self.modes.values()), dtype=torch.float32)
        mode = sample_modes(batch_size, self.mode_probs, generator)
        return self._plan(mode, table, self.mode_names)


JOINT_MASKING_POLICIES = {
    "independent": IndependentJointMasking,
    "maskvlm": MaskVLMJointMasking,
    "mlim": MLIMJointMasking,
}

__all__ = [
    "JointPlan",
    "JointMaskingPolicy",
    "IndependentJointMasking",
    "MaskVLMJointMasking",
    "MLIMJointMasking",
    "MLIM_DEFAULT_MODES",
    "JOINT_MASKING_POLICIES",
]
