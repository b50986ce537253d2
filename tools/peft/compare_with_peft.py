#!/usr/bin/env python3
"""Checks a SlothSharp-trained LoRA adapter against PEFT (run where transformers + PEFT are installed, e.g. the GPU machine).

    python3 tools/peft/compare_with_peft.py --base DENSE_BASE_DIR --adapter ADAPTER_DIR [--merged SLOTH_MERGED_DIR]

1. PeftModel.from_pretrained(base, adapter) must load the adapter as it is (keys, shapes, config fields).
2. With --merged (the output of `sloth merge --model BASE --adapter ADAPTER --out MERGED --dtype bf16|fp32`), the merged
   checkpoint's logits must equal PEFT's base + adapter logits within bf16 tolerance.
The base must be dense (bitsandbytes is not needed); write one with LlamaCheckpointWriter.WriteRandom(..., bnb4bit: false).
Prints one line per check; exit code 1 when a check fails.
"""
import argparse, sys
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel

ap = argparse.ArgumentParser()
ap.add_argument("--base", required=True)
ap.add_argument("--adapter", required=True)
ap.add_argument("--merged")
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
ap.add_argument("--tolerance", type=float, default=None, help="max |logit diff| (default 0.1 for bf16, 1e-3 for float32)")
a = ap.parse_args()
dtype = getattr(torch, a.dtype)
tol = a.tolerance if a.tolerance is not None else (0.1 if dtype == torch.bfloat16 else 1e-3)
dev = "cuda" if torch.cuda.is_available() else "cpu"

base = AutoModelForCausalLM.from_pretrained(a.base, dtype=dtype).to(dev)
peft = PeftModel.from_pretrained(base, a.adapter).to(dev).eval()
n_lora = sum(1 for n, _ in peft.named_parameters() if "lora_" in n)
print(f"PEFT loaded {a.adapter}: {n_lora} LoRA tensors, r={peft.peft_config['default'].r}, alpha={peft.peft_config['default'].lora_alpha}")
g = torch.Generator().manual_seed(0)
ids = torch.randint(3, min(base.config.vocab_size, 400), (2, 64), generator=g).to(dev)
with torch.no_grad():
    ref = peft(input_ids=ids).logits.float()
ok = True
if a.merged:
    merged = AutoModelForCausalLM.from_pretrained(a.merged, dtype=dtype).to(dev).eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits.float()
    diff = (got - ref).abs().max().item()
    ok = diff <= tol
    print(f"merged ({a.merged}) vs PEFT base + adapter: max |logit diff| {diff:.3e} (tolerance {tol:g}): {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
