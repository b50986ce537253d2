#!/usr/bin/env python3
"""Cross-check SlothSharp against transformers + PEFT on the GPU machine (no .NET involved).

Loads a DENSE Hugging Face Llama checkpoint (for a bnb-4bit model: the `sloth dequant` output of its NF4 weights, so
both sides use the same weights; bitsandbytes is not installed on the GPU machine) in bf16, computes what
`sloth eval` computes (each document = BOS + its tokens, token-weighted mean next-token cross-entropy), without and
with the PEFT adapter, and greedy-generates from a prompt. Prints one JSON object.

usage: peft_compare.py --base DIR --adapter DIR --data FILE [--prompt TEXT] [--max-new-tokens N] [--max-length N]
"""
import argparse, json, sys, time

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from peft import PeftModel


def read_documents(path):
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            docs.append(json.loads(line)["text"] if path.endswith(".jsonl") else line)
    return docs


def load_tokenizer(model_dir):
    """The tokenizer and its BOS id as SlothSharp's eval uses it: the tokenizer's own bos_token (tokenizer_config.json),
    config.json's bos_token_id only when the tokenizer names none."""
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    bos = tok.bos_token_id
    return tok, (bos if bos is not None else json.load(open(f"{model_dir}/config.json"))["bos_token_id"])


@torch.no_grad()
def evaluate(model, tok, docs, bos, max_length):
    total, count = 0.0, 0
    for text in docs:
        ids = [bos] + tok.encode(text, add_special_tokens=False)
        for s in range(0, len(ids) - 1, max_length - 1):
            window = ids[s:s + max_length]
            if len(window) < 2:
                break
            x = torch.tensor([window], device="cuda")
            logits = model(input_ids=x).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
            total += loss.item()
            count += len(window) - 1
    return total / count, count


@torch.no_grad()
def greedy(model, tok, bos, prompt, n):
    ids = torch.tensor([[bos] + tok.encode(prompt, add_special_tokens=False)], device="cuda")
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1]:].tolist()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--prompt", default="The")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--max-length", type=int, default=1024)
    a = p.parse_args()
    tok, bos = load_tokenizer(a.base)
    docs = read_documents(a.data)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.bfloat16).cuda().eval()
    load_s = time.time() - t0
    base_loss, tokens = evaluate(model, tok, docs, bos, a.max_length)
    base_gen = greedy(model, tok, bos, a.prompt, a.max_new_tokens)
    model = PeftModel.from_pretrained(model, a.adapter).eval()
    lora_loss, _ = evaluate(model, tok, docs, bos, a.max_length)
    lora_gen = greedy(model, tok, bos, a.prompt, a.max_new_tokens)
    json.dump({"transformers_load_s": round(load_s, 2), "tokens": tokens, "loss_base": base_loss,
               "loss_lora": lora_loss, "greedy_base": base_gen, "greedy_lora": lora_gen}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
