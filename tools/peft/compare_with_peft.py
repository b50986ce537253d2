#!/usr/bin/env python3
"""Checks a SlothSharp-trained LoRA adapter and its `sloth merge` output against PEFT (run where transformers + PEFT
are installed, e.g. the GPU machine).

    python3 tools/peft/compare_with_peft.py --base DENSE_BASE_DIR --adapter ADAPTER_DIR [--merged SLOTH_MERGED_DIR]
        [--dtype bfloat16|float32] [--base-fp32 DENSE_FP32_BASE_DIR]

1. PeftModel.from_pretrained(base, adapter) must load the adapter as it is (keys, shapes, config fields).
2. With --merged (`sloth merge --model BASE --adapter ADAPTER --out MERGED --dtype bf16|fp32`): the merged checkpoint's
   logits against PEFT's unmerged base + adapter computed in float32 (the truth, TF32 off).
   - float32 merge: max |logit difference| <= 1e-3.
   - bf16 merge: folding B·A into a bf16 weight rounds it, whoever merges, so the bound is what PEFT's own
     merge_and_unload() in bf16 costs on the same model: SlothSharp's relative L2 error <= 1.5x PEFT's.
The base must be dense (bitsandbytes is not needed): `sloth dequant` of an NF4 checkpoint gives one.
Prints one line per check; exit code 1 when a check fails.
"""
import argparse, sys
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

ap = argparse.ArgumentParser()
ap.add_argument("--base", required=True)
ap.add_argument("--adapter", required=True)
ap.add_argument("--merged")
ap.add_argument("--base-fp32", help="dense float32 copy of the same weights for the float32 truth (default: --base)")
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
a = ap.parse_args()
dtype = getattr(torch, a.dtype)
dev = "cuda" if torch.cuda.is_available() else "cpu"


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def rel_l2(x, y):
    return ((x - y).norm() / y.norm()).item()


peft32 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.base_fp32 or a.base, dtype=torch.float32).to(dev), a.adapter).eval()
cfg = peft32.peft_config["default"]
n_lora = sum(1 for n, _ in peft32.named_parameters() if "lora_" in n)
print(f"PEFT loaded {a.adapter}: {n_lora} LoRA tensors, r={cfg.r}, alpha={cfg.lora_alpha}")
vocab = peft32.base_model.model.config.vocab_size
ids = torch.randint(3, min(vocab, 400), (2, 64), generator=torch.Generator().manual_seed(0)).to(dev)
truth = logits(peft32, ids)
del peft32
ok = True
if a.merged:
    got = logits(AutoModelForCausalLM.from_pretrained(a.merged, dtype=dtype).to(dev).eval(), ids)
    err = rel_l2(got, truth)
    if dtype == torch.float32:
        diff = (got - truth).abs().max().item()
        ok = diff <= 1e-3
        print(f"merged fp32 ({a.merged}) vs PEFT base + adapter (fp32): max |logit diff| {diff:.3e}, rel L2 {err:.3e} (bound 1e-3 abs): {'OK' if ok else 'FAIL'}")
    else:
        peft_merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.base, dtype=dtype).to(dev), a.adapter).merge_and_unload().eval()
        ref = logits(peft_merged, ids)
        ref_err = rel_l2(ref, truth)
        ok = err <= 1.5 * ref_err
        print(f"against PEFT base + adapter in float32: sloth merge (bf16) rel L2 {err:.3e}, max |diff| {(got - truth).abs().max().item():.3f}; "
              f"PEFT merge_and_unload (bf16) rel L2 {ref_err:.3e}, max |diff| {(ref - truth).abs().max().item():.3f}; "
              f"sloth vs PEFT merged: max |diff| {(got - ref).abs().max().item():.3f} (bound: 1.5x PEFT's error): {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
