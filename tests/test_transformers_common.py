"""transformers' own common test suites (5.23.0 sdist, see tests/transformers_sdist.py) against MaskVL.

``ModelTesterMixin`` + ``ConfigTester`` run against the three tiny presets (maskvlm, mlim, lxmert) and every
task class each builds; ``ProcessorTesterMixin`` against ``MaskVLProcessor``; ``ImageProcessingTestMixin``
against ``MaskVLImageProcessor``. Harness glue only: the mixins recognise a model through the built-in
``*_MAPPING_NAMES`` tables, so MaskVL's classes are entered there for the duration of each test.

Every overridden test names the convention difference behind it (README, "Model classes"):
* ``test_attention_outputs``, ``test_hidden_states_output``, ``test_retain_grad_hidden_states_attentions``:
  a composite model returns per-tower and per-stream tuples (``text_hidden_states``, ``vision_hidden_states``,
  ``fused_text_hidden_states`` ...), as LXMERT and FLAVA do, not one ``hidden_states`` tuple; the overrides check
  every field's length and shape and that the config defaults are honoured.
* ``_prepare_for_class``: MaskVL's labels (pre-training ``labels`` / ``bool_masked_pos`` / ``itm_labels``, VQA
  answer ids, retrieval ``return_loss``) are not in the mixin's label table, so they are added as
  ``BertModelTest`` adds its pre-training labels.
* ``test_bc_torch_dtype`` and ``test_eager_matches_sdpa_inference_*`` run on one class (``ONE_CLASS_TESTS``): they
  check loading code and a vision tower every class shares; ``test_fused_states_eager_matches_sdpa`` compares the
  fused states, which the mixin's eager-vs-sdpa test does not read.
"""

import copy
import unittest
from unittest import mock

import pytest
import torch
from transformers.modeling_utils import AttentionInterface
from transformers.models.auto import modeling_auto
from transformers_sdist import import_common

from maskvl_processing import MaskVLImageProcessor, MaskVLProcessor, train_wordpiece_tokenizer
from modeling_maskvl import (MaskVLConfig, MaskVLForImageTextRetrieval, MaskVLForMaskedLM, MaskVLForPreTraining,
                             MaskVLForQuestionAnswering, MaskVLModel)
from modeling_maskvl.fusion import MaskVLAttention

modeling_common = import_common("test_modeling_common")
configuration_common = import_common("test_configuration_common")
processing_common = import_common("test_processing_common")
image_processing_common = import_common("test_image_processing_common")

MAPPINGS = {
    "MODEL_MAPPING_NAMES": "MaskVLModel",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "MaskVLForPreTraining",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "MaskVLForMaskedLM",
    "MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES": "MaskVLForQuestionAnswering",
}
VOCAB, SEQ, IMAGE, PATCH, WIDTH = 99, 7, 16, 8, 32


@pytest.fixture(autouse=True)
def maskvl_in_the_mapping_tables():
    patches = [mock.patch.dict(getattr(modeling_auto, table), {"maskvl": name}) for table, name in MAPPINGS.items()]
    for patch in patches:
        patch.start()
    yield
    for patch in reversed(patches):
        patch.stop()


def tiny_config(preset, **overrides):
    """The preset's architecture at the mixin's test size: width 32, 2 heads, at most one layer per tower (mlim's
    have none), two fusion layers (the mixin's "small model" rule), 16-px images of 2 x 2 patches, vocabulary 99."""
    towers = MaskVLConfig.from_preset(preset)

    def size(layers):
        return {"hidden_size": WIDTH, "intermediate_size": 37, "num_attention_heads": 2, "num_hidden_layers": layers}

    stem = {}
    if getattr(towers.vision_config, "conv_stem_channels", None) is not None:  # -small: one width per stride-2 stage
        stem = {"conv_stem_channels": [8] * (PATCH.bit_length() - 1)}
    return MaskVLConfig.from_preset(
        preset, text_config={"vocab_size": VOCAB, "max_position_embeddings": 32,
                             **size(min(towers.text_config.num_hidden_layers, 1))},
        vision_config={"image_size": IMAGE, "patch_size": PATCH,
                       **size(min(towers.vision_config.num_hidden_layers, 1)), **stem},
        cross_modal_config=size(2), projection_dim=16, num_labels=3, **overrides)


class _TextTester:
    """What the mixin's get_text_features tests read: the text tower's depth and text-only inputs."""

    def __init__(self, parent):
        self.parent = parent
        self.num_hidden_layers = parent.config.text_config.num_hidden_layers

    def prepare_config_and_inputs_for_common(self):
        config, inputs = self.parent.prepare_config_and_inputs_for_common()
        return config, {k: inputs[k] for k in ("input_ids", "attention_mask")}


class MaskVLModelTester:
    def __init__(self, parent, preset, batch_size=3, is_training=True):
        self.parent = parent
        self.preset = preset
        self.config = tiny_config(preset)
        self.batch_size, self.seq_length, self.is_training = batch_size, SEQ, is_training
        self.image_size, self.patch_size = IMAGE, PATCH
        self.num_patches = self.config.num_patches
        cross = self.config.cross_modal_config
        self.num_hidden_layers, self.hidden_size = cross.num_hidden_layers, cross.hidden_size
        self.num_attention_heads = cross.num_attention_heads
        self.vision_config = self.config.vision_config.to_dict()
        self.text_model_tester = _TextTester(self)
        # eager-vs-sdpa: bool_masked_pos over the patches (the mixin builds one of mask_length entries)
        self.num_masks, self.mask_length = 2, self.num_patches

    def get_config(self):
        return copy.deepcopy(self.config)

    def prepare_config_and_inputs_for_common(self):
        g = torch.Generator().manual_seed(0)
        input_ids = torch.randint(5, VOCAB, (self.batch_size, SEQ), generator=g)
        input_ids[:, 0] = 2
        attention_mask = torch.ones(self.batch_size, SEQ, dtype=torch.long)
        attention_mask[-1, -2:] = 0
        pixel_values = torch.rand(self.batch_size, 3, IMAGE, IMAGE, generator=g)
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask,
                                   "pixel_values": pixel_values}


def _layer_counts(config, model):
    """Expected length of every per-layer tuple a class returns."""
    text, vision = config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers
    fusion = config.cross_modal_config.num_hidden_layers
    fused_image = not getattr(getattr(model, "maskvl", model).fusion, "text_only", False) or \
        config.cross_modal_config.fusion_type == "single_stream"
    cross = config.cross_modal_config.fusion_type != "single_stream"
    hidden = {"text_hidden_states": text + 1, "vision_hidden_states": vision + 1,
              "fused_text_hidden_states": fusion + 1}
    attentions = {"text_attentions": text, "vision_attentions": vision, "fused_text_attentions": fusion}
    if fused_image:
        hidden["fused_image_hidden_states"] = fusion + 1
        attentions["fused_image_attentions"] = fusion
    if cross:
        attentions["fused_text_cross_attentions"] = fusion
        if fused_image:
            attentions["fused_image_cross_attentions"] = fusion
    return hidden, attentions


# Run on one class: what these tests check is shared by every task class (same MaskVLPreTrainedModel loading code,
# same towers), so they run on MaskVLForPreTraining, which builds every part but the VQA classifier.
# test_bc_torch_dtype: the `torch_dtype=` alias of `dtype=` in from_pretrained (70 loads per class);
# test_eager_matches_sdpa_inference_*: the mixin compares only `vision_hidden_states[-1]` (the vision tower, the same
# module in every class); the fused states of every preset are compared by test_fused_states_eager_matches_sdpa.
ONE_CLASS_TESTS = ("test_bc_torch_dtype", "test_eager_matches_sdpa_inference")


class _MaskVLCommon(modeling_common.ModelTesterMixin):
    preset = None
    additional_model_inputs = ["pixel_values"]
    _is_composite = True

    def setUp(self):
        self.model_tester = MaskVLModelTester(self, self.preset)
        self.config_tester = configuration_common.ConfigTester(
            self, config_class=MaskVLConfig, has_text_modality=False, projection_dim=16, mlm_weight=0.5,
            pooling="text")

    @property
    def all_model_classes(self):
        if self._testMethodName.startswith(ONE_CLASS_TESTS):
            return (MaskVLForPreTraining,)
        classes = (MaskVLModel, MaskVLForPreTraining, MaskVLForMaskedLM, MaskVLForQuestionAnswering)
        return classes + ((MaskVLForImageTextRetrieval,) if tiny_config(self.preset).use_itc_head else ())

    def test_config(self):
        self.config_tester.run_common_tests()

    # Convention difference: MaskVL's labels are not in the mixin's table (BertModelTest adds its own the same way).
    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if not return_labels:
            return inputs
        batch = self.model_tester.batch_size
        if model_class is MaskVLForPreTraining:
            labels = torch.full((batch, SEQ), -100)
            labels[:, 2:4] = inputs["input_ids"][:, 2:4]
            bool_masked_pos = torch.zeros(batch, self.model_tester.num_patches, dtype=torch.bool)
            bool_masked_pos[:, ::3] = True
            inputs.update(labels=labels, bool_masked_pos=bool_masked_pos)
            if self.model_tester.config.use_itm_head:
                inputs["itm_labels"] = torch.ones(batch, dtype=torch.long)
        elif model_class is MaskVLForQuestionAnswering:
            inputs["labels"] = torch.zeros(batch, dtype=torch.long)
        elif model_class is MaskVLForImageTextRetrieval:
            inputs.update(return_loss=True, itm_labels=torch.ones(batch, dtype=torch.long))
        return inputs

    # Convention difference: a composite model returns per-tower / per-stream tuples (as LXMERT, FLAVA).
    def _check_layer_outputs(self, outputs, config, model, hidden: bool, attentions: bool):
        expected_hidden, expected_attentions = _layer_counts(config, model)
        batch, heads = self.model_tester.batch_size, self.model_tester.num_attention_heads
        lengths = {"text": SEQ, "vision": 1 + self.model_tester.num_patches}
        lengths["fused_text"], lengths["fused_image"] = lengths["text"], lengths["vision"]
        for name, count in expected_hidden.items():
            value = outputs[name] if hidden else getattr(outputs, name)
            if not hidden:
                self.assertIsNone(value, name)
                continue
            self.assertEqual(len(value), count, name)
            stream = name.replace("_hidden_states", "")
            width = (config.text_config.hidden_size if stream == "text" else config.vision_config.hidden_size
                     if stream == "vision" else self.model_tester.hidden_size)
            for state in value:
                self.assertEqual(tuple(state.shape), (batch, lengths[stream], width), name)
        single = config.cross_modal_config.fusion_type == "single_stream"
        for name, count in expected_attentions.items():
            value = getattr(outputs, name)
            if not attentions:
                self.assertIsNone(value, name)
                continue
            self.assertEqual(len(value), count, name)
            stream = name.replace("_cross_attentions", "").replace("_attentions", "")
            if name.endswith("cross_attentions"):
                keys = lengths["fused_image" if stream == "fused_text" else "fused_text"]
            elif single and stream.startswith("fused"):
                keys = lengths["text"] + lengths["vision"]
            else:
                keys = lengths[stream]
            tower_heads = {"text": config.text_config.num_attention_heads,
                           "vision": config.vision_config.num_attention_heads}.get(stream, heads)
            for weights in value:
                self.assertEqual(tuple(weights.shape), (batch, tower_heads, lengths[stream], keys), name)
                torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))  # softmax rows

    def test_attention_outputs(self):
        for model_class in self.all_model_classes:
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            model = model_class._from_config(config, attn_implementation="eager").eval()
            with torch.no_grad():
                plain = model(**inputs)
                self._check_layer_outputs(plain, model.config, model, hidden=False, attentions=False)
                out = model(**inputs, output_attentions=True)
                self._check_layer_outputs(out, model.config, model, hidden=False, attentions=True)
                both = model(**inputs, output_attentions=True, output_hidden_states=True)
                self._check_layer_outputs(both, model.config, model, hidden=True, attentions=True)
            # the config default is honoured
            config.output_attentions = True
            model = model_class._from_config(config, attn_implementation="eager").eval()
            with torch.no_grad():
                self._check_layer_outputs(model(**inputs), model.config, model, hidden=False, attentions=True)
                self._check_layer_outputs(model(**inputs, output_attentions=False), model.config, model,
                                          hidden=False, attentions=False)

    def test_hidden_states_output(self):
        for model_class in self.all_model_classes:
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            model = model_class(copy.deepcopy(config)).eval()
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=True)
            self._check_layer_outputs(out, config, model, hidden=True, attentions=False)
            # the last entry of each fusion stream is the returned (normed) fused state
            if model_class is MaskVLModel:
                torch.testing.assert_close(out.fused_text_hidden_states[-1], out.fused_text_hidden_state)
            config.output_hidden_states = True
            model = model_class(config).eval()
            with torch.no_grad():
                self._check_layer_outputs(model(**inputs), config, model, hidden=True, attentions=False)

    def test_retain_grad_hidden_states_attentions(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = MaskVLForMaskedLM._from_config(config, attn_implementation="eager")
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
        kept = [out.text_hidden_states[0], out.vision_hidden_states[0], out.fused_text_hidden_states[0]]
        if config.cross_modal_config.fusion_type != "single_stream":  # single stream: rows split by modality are
            kept.append(out.fused_text_attentions[0])  # views of the joint weights, off the backward path
        for tensor in kept:
            tensor.retain_grad()
        out.logits.flatten()[0].backward()
        for tensor in kept:
            self.assertIsNotNone(tensor.grad)


class MaskVLMTinyModelTest(_MaskVLCommon, unittest.TestCase):
    preset = "maskvlm-tiny"


class MLIMTinyModelTest(_MaskVLCommon, unittest.TestCase):
    preset = "mlim-tiny"

    def test_reverse_loading_mapping(self):
        # Convention difference: MLIM's towers have no layers, so ViT's layer-key renaming has no key to rename
        # (the mixin's own switch for "mapping changes no key"); every other check of the test runs.
        super().test_reverse_loading_mapping(check_keys_were_modified=False)


class LXMERTTinyModelTest(_MaskVLCommon, unittest.TestCase):
    preset = "lxmert-tiny"


class MaskVLMSmallModelTest(_MaskVLCommon, unittest.TestCase):
    """The default run's architecture: the early-convolution stem with BatchNorm, fan-in init."""

    preset = "maskvlm-small"


def test_every_model_test_class_runs_the_mixin():
    """The suites above really are transformers' (not an empty shell): a sample of its tests is present."""
    names = set(dir(MaskVLMTinyModelTest))
    sdpa_case = "test_eager_matches_sdpa_inference_00_fp16_pad_left_sdpa_kernels"
    assert {"test_save_load", "test_resize_tokens_embeddings", sdpa_case, "test_model_outputs_equivalence",
            "test_training_gradient_checkpointing"} <= names
    # only the ONE_CLASS_TESTS run on one class; every other test sees every task class
    assert MaskVLMTinyModelTest(sdpa_case).all_model_classes == (MaskVLForPreTraining,)
    assert len(MaskVLMTinyModelTest("test_save_load").all_model_classes) == 5
    assert len(LXMERTTinyModelTest("test_save_load").all_model_classes) == 4  # no ITC head: no retrieval class


@pytest.mark.parametrize("preset", ["maskvlm-tiny", "mlim-tiny", "lxmert-tiny"])
def test_fused_states_eager_matches_sdpa(tmp_path, preset):
    """The mixin's eager-vs-sdpa tests read the vision tower only: here the fused text and image states (every
    fusion layer, float32, eval, padded rows) agree within 1e-5, and the sdpa model really sends every fusion
    attention through sdpa (the eager one none)."""
    torch.manual_seed(0)
    MaskVLModel(tiny_config(preset)).save_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, VOCAB, (3, SEQ), generator=g)
    attention_mask = torch.ones(3, SEQ, dtype=torch.long)
    attention_mask[1, -3:] = attention_mask[2, -1:] = 0  # right padding of different lengths
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
              "pixel_values": torch.rand(3, 3, IMAGE, IMAGE, generator=g), "output_hidden_states": True}
    sdpa = AttentionInterface._global_mapping["sdpa"]
    outputs, fusion_calls = {}, {}
    for impl in ("eager", "sdpa"):
        model = MaskVLModel.from_pretrained(tmp_path, attn_implementation=impl).eval()
        fusion_attention = {m for m in model.fusion.modules() if isinstance(m, MaskVLAttention)}
        called = []

        def counting_sdpa(module, *args, **kwargs):
            called.append(module)
            return sdpa(module, *args, **kwargs)

        with mock.patch.dict(AttentionInterface._global_mapping, {"sdpa": counting_sdpa}), torch.no_grad():
            outputs[impl] = model(**inputs)
        assert fusion_attention, "no fusion attention module found"
        fusion_calls[impl] = {m for m in called if m in fusion_attention}
        assert fusion_calls[impl] == (fusion_attention if impl == "sdpa" else set()), impl
    eager, sdpa_out = outputs["eager"], outputs["sdpa"]
    for field in ("fused_text_hidden_state", "fused_image_hidden_state", "fused_text_hidden_states",
                  "fused_image_hidden_states", "pooler_output"):
        assert eager[field] is not None, field  # every preset's MaskVLModel fuses both streams
        torch.testing.assert_close(sdpa_out[field], eager[field], rtol=1e-5, atol=1e-5,
                                   msg=lambda message, field=field: f"{field}: {message}")
    assert len(eager.fused_text_hidden_states) == 3 and eager.fused_text_hidden_state.dtype == torch.float32


# --------------------------------------------------------------------------------------------- processors
CAPTIONS = ["lower newer", "a man riding a horse on the beach", "two dogs play with a red ball"] * 20


class MaskVLProcessorTest(processing_common.ProcessorTesterMixin, unittest.TestCase):
    processor_class = MaskVLProcessor

    # Convention difference: a remote-code processor writes `auto_map` (for Hub `trust_remote_code` loading) into
    # the instance it saves, which the reloaded one does not carry; in-tree processors have no `auto_map`. The two
    # save/load tests run with the Hub registration off; tests/test_processor.py covers the remote-code round trip.
    def test_processor_from_and_save_pretrained(self):
        with mock.patch.object(MaskVLProcessor, "_auto_class", None), \
                mock.patch.object(MaskVLImageProcessor, "_auto_class", None):
            super().test_processor_from_and_save_pretrained()

    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        with mock.patch.object(MaskVLProcessor, "_auto_class", None), \
                mock.patch.object(MaskVLImageProcessor, "_auto_class", None):
            super().test_processor_from_and_save_pretrained_as_nested_dict()

    @classmethod
    def _setup_tokenizer(cls):
        return train_wordpiece_tokenizer(CAPTIONS, vocab_size=200)

    @classmethod
    def _setup_image_processor(cls):
        return MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=8)


class MaskVLImageProcessingTester(image_processing_common.ImageProcessingTester if hasattr(
        image_processing_common, "ImageProcessingTester") else object):
    def __init__(self, parent, batch_size=7, num_channels=3, min_resolution=30, max_resolution=80):
        self.size = {"height": 32, "width": 32}
        self.patch_size = 8
        self.do_normalize = True
        super().__init__(parent, batch_size=batch_size, num_channels=num_channels, min_resolution=min_resolution,
                         max_resolution=max_resolution)

    def _get_image_processing_classes(self):
        return {"pil": MaskVLImageProcessor}  # PIL backend only: no torchvision here

    def expected_output_image_shape(self, images):
        return self.num_channels, self.size["height"], self.size["width"]


class MaskVLImageProcessingTest(image_processing_common.ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = MaskVLImageProcessingTester

    @unittest.skip("convention difference: PIL-only image processor (the project installs no torchvision)")
    def test_new_models_require_torchvision_backend(self):
        pass


# ------------------------------------------------------------------------------------- resized vocabularies
RESIZED = {"maskvlm-tiny": MaskVLForMaskedLM, "lxmert-tiny": MaskVLForPreTraining}


def test_resize_token_embeddings_after_adding_tokens_saves_and_reloads(tmp_path):
    """Tokens added to the tokenizer: the text embedding *and* the MLM decoder grow; the folder reloads with the
    package (Auto class) and without it (remote code, one fresh process for both folders)."""
    from isolation import run_isolated
    from transformers import AutoModelForMaskedLM, AutoModelForPreTraining

    probes = {}
    for preset, cls in RESIZED.items():
        tokenizer = train_wordpiece_tokenizer(CAPTIONS, vocab_size=80)
        config = MaskVLConfig.from_preset(preset, text_config={"vocab_size": len(tokenizer)},
                                          vision_config={"image_size": IMAGE})
        model = cls(config).eval()
        tokenizer.add_tokens(["zebra-crossing", "okapi"])
        model.resize_token_embeddings(len(tokenizer))
        assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == config.text_config.vocab_size
        assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
        ids = tokenizer(["an okapi on a zebra-crossing"], return_tensors="pt")["input_ids"]
        assert ids.max() >= len(tokenizer) - 2  # a new token is in the input
        pixels = torch.rand(1, 3, IMAGE, IMAGE)
        key = "logits" if cls is MaskVLForMaskedLM else "mlm_logits"
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels)[key]
        assert logits.shape == (1, ids.shape[1], len(tokenizer))
        folder = tmp_path / preset
        model.save_pretrained(folder)
        torch.save({"ids": ids, "pixels": pixels, "logits": logits}, folder / "probe.pt")
        auto = AutoModelForMaskedLM if cls is MaskVLForMaskedLM else AutoModelForPreTraining
        reloaded = auto.from_pretrained(folder).eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(input_ids=ids, pixel_values=pixels)[key], logits)
        probes[str(folder)] = (auto.__name__, key, [1, ids.shape[1], len(tokenizer)])
    results = run_isolated(f"""
        import json, torch, transformers
        results = {{}}
        for folder, (auto, key, _) in {probes!r}.items():
            probe = torch.load(folder + "/probe.pt")
            model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
            with torch.no_grad():
                logits = model(input_ids=probe["ids"], pixel_values=probe["pixels"])[key]
            results[folder] = {{"module": type(model).__module__, "shape": list(logits.shape),
                               "max_diff": float((logits - probe["logits"]).abs().max())}}
        print(json.dumps(results))
    """, cwd=tmp_path)
    assert results.keys() == probes.keys()
    for folder, result in results.items():
        assert not result["module"].startswith("modeling_maskvl"), folder  # the copied remote code, not the package
        assert result["shape"] == probes[folder][2] and result["max_diff"] < 1e-5, (folder, result)
