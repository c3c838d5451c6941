"""maskvl_processing: tokenizer, image processor, processor, word classes, masking and collation.

Inference side (copied to the Hub as remote code): `MaskVLImageProcessor`, `MaskVLProcessor`.
Training side: `CaptionTagger` (word classes, in `datasets.map`), the masking policy registries
and `MaskVLDataCollator`.

Importing this package registers the image processor and processor with `AutoImageProcessor` /
`AutoProcessor` (for the model type "maskvl") and for remote code (`register_for_auto_class`). Only
the inference side is imported then; the training side is imported when first used.
"""

import importlib

from .errors import MaskVLDataError
from .image_processing_maskvl import MaskVLImageProcessor
from .processing_maskvl import MaskVLProcessor

# Everything else is imported on first use (module-level __getattr__): an inference user who only wants the
# processor does not load the collator, the masking policies, the taggers or the tokenizer trainer.
_LAZY_NAMES = {
    "data_collator": ("MaskVLDataCollator",),
    "image_loading": ("load_image",),
    "image_masking": ("IMAGE_MASKING_POLICIES", "BlockMasking", "NoImageMasking", "PatchGrid", "RandomPatchMasking"),
    "itm_negatives": ("ImageSwapNegatives",),
    "joint_masking": ("JOINT_MASKING_POLICIES", "IndependentJointMasking", "JointPlan", "MaskVLMJointMasking",
                      "MLIMJointMasking"),
    "text_masking": ("TEXT_MASKING_POLICIES", "AttributeMasking", "ContentWordMasking", "ObjectMasking",
                     "RandomTokenMasking", "RelationshipMasking", "StopWordMasking", "TextBatch", "TopConcreteMasking",
                     "WholeWordMasking", "WordClassMasking"),
    "tokenization": ("load_tokenizer", "train_wordpiece_tokenizer"),
    "word_classes": ("ATTRIBUTE", "CONTENT", "OBJECT", "RELATIONSHIP", "STOP_OR_PUNCT", "UNKNOWN_CONCRETENESS",
                     "CaptionTagger", "WordClassifier"),
}
_LAZY = {name: module for module, names in _LAZY_NAMES.items() for name in names}


def __getattr__(name: str):
    """Import the module that owns `name` on first access (`from maskvl_processing import CaptionTagger`)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


MODEL_TYPE = "maskvl"


def _register_auto_classes() -> None:
    """Register with the Auto classes: by `MaskVLConfig` when the model package is importable,
    else by the model-type string (enough for `AutoImageProcessor` to resolve the class name)."""
    from transformers import AutoImageProcessor, AutoProcessor

    MaskVLImageProcessor.register_for_auto_class("AutoImageProcessor")
    MaskVLProcessor.register_for_auto_class("AutoProcessor")
    try:
        from modeling_maskvl import MaskVLConfig
    except ImportError:
        MaskVLConfig = None
    key = MaskVLConfig if MaskVLConfig is not None else MODEL_TYPE
    AutoImageProcessor.register(key, image_processor_classes={"pil": MaskVLImageProcessor}, exist_ok=True)
    if MaskVLConfig is not None:
        AutoProcessor.register(MaskVLConfig, MaskVLProcessor, exist_ok=True)


_register_auto_classes()

__all__ = ["MaskVLDataError", "MaskVLImageProcessor", "MaskVLProcessor", *sorted(_LAZY)]
