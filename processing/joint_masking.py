"""Joint masking policies: the one owner of every row's masking rates.

Per batch, a joint policy decides for each image-text pair how much of each modality to mask and returns a
`JointPlan`: per-row text masking rates and image masking ratios (0 = leave that modality unmasked) plus the
mode index of each row. Its rates are numbers fixed when it is built; `MaskVLDataCollator` hands the plan's
rates to the text and image policies, which mask each row at the rate it is given. Registry:
`JOINT_MASKING_POLICIES`.

* `independent` — every pair: text at `text_rate` (default 0.15, BERT) and image at `image_ratio` (default 0.6,
  MaskVLM). Given to the collator by name, it is built with the rates of the collator's text and image policies
  (`text_policy_kwargs={"rate": 0.3}` still sets the text rate; the `none` image policy has ratio 0).
* `maskvlm` — Kwon et al. (MaskVLM): by default one modality per pair, chosen with `text_prob`
  (0.5): text masked at `text_rate` (0.3) with the image intact, or image masked at
  `image_ratio` (0.6) with the text intact. `both_prob` (0.0) masks both at once. Modes:
  ("text", "image", "both").
* `mlim` — Arici et al. (MLIM) modality-aware masking: each pair gets one of heavy-image,
  heavy-text or light-both masking. **The paper's exact rates and mode probabilities are not known
  to us**; our defaults, chosen so that each modality must often be recovered from the other, are
  heavy_image = (text 0.0, image 0.75), heavy_text = (text 0.5, image 0.0),
  light_both = (text 0.15, image 0.25), each mode with probability 1/3. All configurable.
"""

from dataclasses import dataclass

import torch

from .masking_primitives import IMAGE_MASK_RATIO, TEXT_MASK_RATE, check_rate, sample_modes


@dataclass
class JointPlan:
    """Per-row masking plan: `text_rate` (B,), `image_ratio` (B,), `mode` (B,) long into `mode_names`."""

    text_rate: torch.Tensor
    image_ratio: torch.Tensor
    mode: torch.Tensor
    mode_names: tuple[str, ...]


class JointMaskingPolicy:
    """Base class: `policy(batch_size, generator) -> JointPlan`: `draw_modes` picks each row's mode and
    `rate_table()` gives that mode's text rate and image ratio."""

    mode_names: tuple[str, ...] = ()

    def rate_table(self) -> torch.Tensor:
        """(M, 2) float: the text rate and image ratio of each mode, in the order of `mode_names`."""
        raise NotImplementedError

    def draw_modes(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) long: the mode of each row."""
        raise NotImplementedError

    def __call__(self, batch_size: int, generator: torch.Generator) -> JointPlan:
        mode = self.draw_modes(batch_size, generator)
        rates = self.rate_table()[mode]  # (B, 2)
        return JointPlan(rates[:, 0].clone(), rates[:, 1].clone(), mode, self.mode_names)


class IndependentJointMasking(JointMaskingPolicy):
    """Mask both modalities of every pair, the text at `text_rate` and the image at `image_ratio`."""

    mode_names = ("both",)

    def __init__(self, text_rate: float = TEXT_MASK_RATE, image_ratio: float = IMAGE_MASK_RATIO):
        self.text_rate = check_rate("text_rate", text_rate)
        self.image_ratio = check_rate("image_ratio", image_ratio)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(text_rate={self.text_rate}, image_ratio={self.image_ratio})"

    def rate_table(self):
        return torch.tensor([[self.text_rate, self.image_ratio]], dtype=torch.float32)

    def draw_modes(self, batch_size, generator):
        return torch.zeros(batch_size, dtype=torch.long)  # one mode: no draw


class MaskVLMJointMasking(JointMaskingPolicy):
    """MaskVLM: mask the text OR the image of each pair (or both with `both_prob`).

    Args:
        text_rate: text masking rate in text mode (default 0.3).
        image_ratio: image masking ratio in image mode (default 0.6).
        text_prob: probability of text mode among single-modality pairs (default 0.5).
        both_prob: probability of masking both modalities of a pair (default 0.0).
    """

    mode_names = ("text", "image", "both")

    def __init__(
        self,
        text_rate: float = 0.3,
        image_ratio: float = IMAGE_MASK_RATIO,
        text_prob: float = 0.5,
        both_prob: float = 0.0,
    ):
        if not (0.0 <= text_prob <= 1.0 and 0.0 <= both_prob <= 1.0):
            raise ValueError("text_prob and both_prob must be probabilities")
        self.text_rate = check_rate("text_rate", text_rate)
        self.image_ratio = check_rate("image_ratio", image_ratio)
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

    def rate_table(self):
        t, i = self.text_rate, self.image_ratio
        return torch.tensor([[t, 0.0], [0.0, i], [t, i]], dtype=torch.float32)

    def draw_modes(self, batch_size, generator):
        return sample_modes(batch_size, self.mode_probs(), generator)


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
        for name, (text_rate, image_ratio) in self.modes.items():
            check_rate(f"modes[{name!r}] text rate", text_rate)
            check_rate(f"modes[{name!r}] image ratio", image_ratio)
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

    def rate_table(self):
        return torch.tensor(list(self.modes.values()), dtype=torch.float32)

    def draw_modes(self, batch_size, generator):
        return sample_modes(batch_size, self.mode_probs, generator)


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
