"""maskvl_processing: tokenizer, image processor, processor, word classes, masking and collation.

Inference side (copied to the Hub as remote code): `MaskVLImageProcessor`, `MaskVLProcessor`.
Training side: `CaptionTagger` (word classes, in `datasets.map`), the masking policy registries
and `MaskVLDataCollator`.

Importing this package registers the image processor and processor with `AutoImageProcessor` /
`AutoProcessor` (for the model type "maskvl") and for remote code (`register_for_auto_class`).
"""

from .data_collator import MaskVLDataCollator, load_image
from .errors import MaskVLDataError
from .image_masking import IMAGE_MASKING_POLICIES, BlockMasking, NoImageMasking, PatchGrid, RandomPatchMasking
from .image_processing_maskvl import MaskVLImageProcessor
from .itm_negatives import ImageSwapNegatives
from .joint_masking import (
    JOINT_MASKING_POLICIES,
    IndependentJointMasking,
    JointPlan,
    MaskVLMJointMasking,
    MLIMJointMasking,
)
from .processing_maskvl import MaskVLProcessor
from .text_masking import (
    TEXT_MASKING_POLICIES,
    AttributeMasking,
    ContentWordMasking,
    ObjectMasking,
    RandomTokenMasking,
    RelationshipMasking,
    StopWordMasking,
    TextBatch,
    TopConcreteMasking,
    WholeWordMasking,
    WordClassMasking,
)
from .tokenization import load_tokenizer, train_wordpiece_tokenizer
from .word_classes import (
    ATTRIBUTE,
    CONTENT,
    OBJECT,
    RELATIONSHIP,
    STOP_OR_PUNCT,
    UNKNOWN_CONCRETENESS,
    CaptionTagger,
    WordClassifier,
)

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

__all__ = [
    "MaskVLDataCollator",
    "MaskVLDataError",
    "MaskVLImageProcessor",
    "MaskVLProcessor",
    "CaptionTagger",
    "WordClassifier",
    "TEXT_MASKING_POLICIES",
    "IMAGE_MASKING_POLICIES",
    "JOINT_MASKING_POLICIES",
    "STOP_OR_PUNCT",
    "CONTENT",
    "OBJECT",
    "ATTRIBUTE",
    "RELATIONSHIP",
    "UNKNOWN_CONCRETENESS",
    "TextBatch",
    "PatchGrid",
    "JointPlan",
    "ImageSwapNegatives",
    "RandomTokenMasking",
    "WholeWordMasking",
    "WordClassMasking",
    "StopWordMasking",
    "ContentWordMasking",
    "ObjectMasking",
    "AttributeMasking",
    "RelationshipMasking",
    "TopConcreteMasking",
    "NoImageMasking",
    "RandomPatchMasking",
    "BlockMasking",
    "IndependentJointMasking",
    "MaskVLMJointMasking",
    "MLIMJointMasking",
    "train_wordpiece_tokenizer",
    "load_tokenizer",
    "load_image",
]
