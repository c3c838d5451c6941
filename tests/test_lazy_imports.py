"""`import maskvl_processing` loads the inference side only (processor, image processor); the training side
(collator, masking policies, taggers, tokenizer training, synthetic data) is imported on first use."""

import json
import subprocess
import sys

PROBE = """
import json, sys
import maskvl_processing as package
loaded = lambda: sorted(name for name in sys.modules if name.startswith("maskvl_processing."))
before = loaded()
package.CaptionTagger, package.MaskVLDataCollator, package.TEXT_MASKING_POLICIES
print(json.dumps([before, loaded(), sorted(set(package.__all__) - set(dir(package)))]))
"""
TRAINING_SIDE = {"data_collator", "image_masking", "joint_masking", "text_masking", "word_classes", "tokenization",
                 "synthetic_scenes", "itm_negatives", "masking_primitives"}


def test_the_processor_import_leaves_the_training_side_unloaded_until_used():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, missing = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"maskvl_processing.processing_maskvl", "maskvl_processing.image_processing_maskvl"} <= set(before)
    assert not {f"maskvl_processing.{name}" for name in TRAINING_SIDE} & set(before)
    assert {"maskvl_processing.data_collator", "maskvl_processing.word_classes", "maskvl_processing.text_masking"} <= set(after)
    assert missing == []  # every name of __all__ is listed by dir() (and importable, via __getattr__)
