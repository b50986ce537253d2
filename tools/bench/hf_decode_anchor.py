"""transformers' generation speed on a checkpoint, the anchor for `bench --suite decode` (issue 25). GPU machine:
    python3 hf_decode_anchor.py CHECKPOINT_DIR [--batches 1,64] [--new 512] [--prompt 32] [--modes eager,static]
Loads the checkpoint in bf16 (SDPA), generates NEW tokens greedily after a random PROMPT-token prompt (EOS ignored, so
every row makes exactly NEW tokens) and prints one line per (mode, batch): tokens/s, ms per step, peak memory.
eager: the default dynamic cache; static: cache_implementation="static", which transformers compiles with
torch.compile. The static cache is as long as the prompt plus NEW tokens, so the warm-up generations make exactly NEW
tokens from a prompt of the same shape (a shorter one allocates another cache and compiles again inside the timed
run, as round 22's did): the compile happens there, timed apart (warmup_s), and the timed generation reuses it. Also
times a 2,048-token prefill (batch 1; --no-prefill skips it)."""
import argparse, json, os, time
import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--batches", default="1,64")
ap.add_argument("--new", type=int, default=512)
ap.add_argument("--prompt", type=int, default=32)
ap.add_argument("--modes", default="eager,static")
ap.add_argument("--no-prefill", action="store_true")
a = ap.parse_args()
name = os.path.basename(os.path.normpath(a.checkpoint))
m = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.bfloat16, device_map={"": 0}, attn_implementation="sdpa").eval()
vocab = m.config.vocab_size
torch.manual_seed(0)

def run(ids, new, **kw):
    torch.cuda.synchronize(); t = time.perf_counter()
    with torch.inference_mode():
        m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                   eos_token_id=None, pad_token_id=0, **kw)
    torch.cuda.synchronize(); return time.perf_counter() - t

if not a.no_prefill:
  with torch.inference_mode():
    x = torch.randint(0, vocab, (1, 2048), device="cuda")
    for _ in range(3): m(x)
    torch.cuda.synchronize(); t = time.perf_counter(); m(x); torch.cuda.synchronize()
    print(f"HFANCHOR {json.dumps({'model': name, 'mode': 'prefill', 'tokens': 2048, 'ms': (time.perf_counter() - t) * 1e3})}", flush=True)

for mode in a.modes.split(","):
    kw = {"cache_implementation": "static"} if mode == "static" else {}
    for b in [int(s) for s in a.batches.split(",")]:
        ids = torch.randint(0, vocab, (b, a.prompt), device="cuda")
        try:
            # static: the same shapes as the timed run (one compile, reused); eager: a short warm-up is enough.
            warm = a.new if mode == "static" else 16
            warmup_s = run(ids, warm, **kw)
            if mode == "static": warmup_s += run(ids, warm, **kw)
            torch.cuda.reset_peak_memory_stats()
            s = run(ids, a.new, **kw)
            row = {"model": name, "mode": mode, "batch": b, "new": a.new, "tokens_per_s": b * a.new / s,
                   "ms_per_step": s / a.new * 1e3, "peak_gb": torch.cuda.max_memory_allocated() / 1e9, "warmup_s": warmup_s}
        except Exception as e:  # report and go on: the other rows still count
            row = {"model": name, "mode": mode, "batch": b, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(f"HFANCHOR {json.dumps(row)}", flush=True)
