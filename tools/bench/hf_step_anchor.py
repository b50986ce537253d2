"""The transformers + PEFT + bitsandbytes QLoRA step, the anchor for `bench --suite step` (issue 22). GPU machine:
    python3 hf_step_anchor.py CHECKPOINT_DIR [--batch 8] [--seq 1024] [--warmup 3] [--steps 10] [--checkpointing]
CHECKPOINT_DIR: a dense bf16 checkpoint of a published shape (`sloth make-checkpoint --preset NAME`). Loads it in 4 bit
(NF4, double quant, bf16 compute, SDPA attention), adds LoRA r16 / alpha 32 on every linear layer (PEFT
`target_modules="all-linear"`), and times AdamW steps on random token ids (labels = inputs, transformers' own shift and
loss). --checkpointing: gradient checkpointing, non-reentrant, as transformers' Trainer sets it. Prints one line
`HFSTEP {json}` with tokens/s over the timed steps and torch's peak allocated / reserved memory (GB)."""
import argparse, json, os, time
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq", type=int, default=1024)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--checkpointing", action="store_true")
a = ap.parse_args()

quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
model = AutoModelForCausalLM.from_pretrained(a.checkpoint, quantization_config=quant, dtype=torch.bfloat16,
                                             attn_implementation="sdpa", device_map={"": 0})
if a.checkpointing:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
vocab = model.config.vocab_size
gen = torch.Generator(device="cuda").manual_seed(0)

def step():
    ids = torch.randint(0, vocab, (a.batch, a.seq), device="cuda", generator=gen)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

for _ in range(a.warmup):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
for _ in range(a.steps):
    loss = step()
torch.cuda.synchronize()
sec = time.perf_counter() - t
print("HFSTEP " + json.dumps({
    "checkpoint": os.path.basename(os.path.normpath(a.checkpoint)), "checkpointing": a.checkpointing,
    "tokens_per_s": a.batch * a.seq * a.steps / sec, "peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
    "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9, "last_loss": float(loss),
    "device": torch.cuda.get_device_name(0)}), flush=True)
