"""Diagnostic (docs/pretraining.md): gradient norm per part of a from-scratch maskvlm-tiny after one MLM backward, for
an initializer_range given on the command line: python bench/diagnostics/init_gradients.py 0.02 (then 0.125)."""
import torch
from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining
torch.manual_seed(0)
import sys; r=float(sys.argv[1]); cfg = MaskVLConfig.from_preset("maskvlm-tiny", text_config={"vocab_size": 100, "initializer_range": r}, vision_config={"initializer_range": r}, cross_modal_config={"initializer_range": r}, initializer_range=r)
m = MaskVLForPreTraining(cfg)
B, T = 8, 12
ids = torch.randint(5, 100, (B, T)); labels = torch.full((B, T), -100); labels[:, 3] = ids[:, 3]; ids[:, 3] = 4
pix = torch.randn(B, 3, 64, 64)
out = m(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pix, labels=labels)
out.loss_breakdown.mlm.backward()
groups = {}
for n, p in m.named_parameters():
    k = n.split(".")[1] if n.startswith("maskvl.") else n.split(".")[0]
    if p.grad is not None:
        groups.setdefault(k, []).append(p.grad.norm().item())
    else:
        groups.setdefault(k + "(nograd)", []).append(0)
for k, v in groups.items(): print(k, len(v), round(sum(x*x for x in v)**0.5, 5))
# how different are image states across images at init?
with torch.no_grad():
    st = m.maskvl.encode_image(pix)
    st = st if torch.is_tensor(st) else st.last_hidden_state
    print("image states across batch: std over batch", st.std(0).mean().item(), "std over tokens", st.std(1).mean().item())
