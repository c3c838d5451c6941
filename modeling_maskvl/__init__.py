"""maskvl model family: config, models, losses.

Importing this package registers the classes with transformers' auto classes, so a saved folder loads with
``AutoModel.from_pretrained(folder)`` without ``trust_remote_code`` when the package is installed. The module
files themselves import only torch, transformers and their flat siblings: they are what ``save_pretrained``
copies next to the weights for Hub users (``trust_remote_code=True``).
"""

from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining,
                          AutoModelForVisualQuestionAnswering)

from . import losses
from .configuration_maskvl import PRESETS, MaskVLConfig, MaskVLCrossModalConfig
from .modeling_maskvl import (MaskVLForImageTextRetrieval, MaskVLForMaskedLM, MaskVLForPreTraining,
                              MaskVLForPreTrainingOutput, MaskVLForQuestionAnswering, MaskVLLosses,
                              MaskVLMaskedLMOutput, MaskVLModel, MaskVLModelOutput, MaskVLPreTrainedModel,
                              MaskVLQuestionAnsweringOutput, MaskVLRetrievalOutput, patchify, unpatchify)

AutoConfig.register(MaskVLConfig.model_type, MaskVLConfig, exist_ok=True)
AutoConfig.register(MaskVLCrossModalConfig.model_type, MaskVLCrossModalConfig, exist_ok=True)
AutoModel.register(MaskVLConfig, MaskVLModel, exist_ok=True)
AutoModelForPreTraining.register(MaskVLConfig, MaskVLForPreTraining, exist_ok=True)
AutoModelForMaskedLM.register(MaskVLConfig, MaskVLForMaskedLM, exist_ok=True)
AutoModelForVisualQuestionAnswering.register(MaskVLConfig, MaskVLForQuestionAnswering, exist_ok=True)

MaskVLConfig.register_for_auto_class("AutoConfig")
MaskVLModel.register_for_auto_class("AutoModel")
MaskVLForPreTraining.register_for_auto_class("AutoModelForPreTraining")
MaskVLForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
MaskVLForQuestionAnswering.register_for_auto_class("AutoModelForVisualQuestionAnswering")

__all__ = [
    "PRESETS", "MaskVLConfig", "MaskVLCrossModalConfig", "MaskVLPreTrainedModel", "MaskVLModel", "MaskVLForPreTraining",
    "MaskVLForMaskedLM", "MaskVLForQuestionAnswering", "MaskVLForImageTextRetrieval", "MaskVLModelOutput",
    "MaskVLForPreTrainingOutput", "MaskVLLosses", "MaskVLRetrievalOutput", "MaskVLMaskedLMOutput",
    "MaskVLQuestionAnsweringOutput", "losses", "patchify", "unpatchify",
]
