#!/usr/bin/env python3
"""SlothSharp vs transformers + PEFT, measured against a float32 truth (issue 13's "within bf16 tolerance").

Both sides use the same weights: --base and --base-fp32 are the `sloth dequant` outputs (bf16, fp32) of the NF4
checkpoint SlothSharp loads; the float32 one holds the dequantized values exactly. For the model without and with the adapter this compares, on the same token ids:
  - SlothSharp's logits (`sloth eval --save-logits`, bf16 and fp32 compute) with transformers' in float32 (the
    truth: TF32 off) and in bf16;
  - the corpus eval loss (`sloth eval`'s number, passed in) with transformers' in float32 and bf16.
"Within bf16 tolerance" is made concrete as: SlothSharp-bf16's logits error against the float32 truth (relative L2 over
all T x V logits) is at most 1.5x the error transformers-bf16 itself makes against that truth (the cost of bf16,
measured on this model, not assumed); SlothSharp-bf16's corpus loss is within 2^-10 relative of the truth (a quarter
of bf16's unit roundoff: one scalar is too noisy for a ratio rule); and SlothSharp-fp32 agrees with the truth to
relative L2 1e-4 (the implementations compute the same function).

usage: parity.py --base DIR --base-fp32 DIR --adapter DIR --data FILE --sloth DIR
       parity.py --render REPORT.md   (re-applies the rules to a saved report's last JSON line; no GPU or torch)
  --sloth DIR holds logits-{base,lora}-{bf16,fp32}.safetensors and losses.json {"base-bf16": x, ...} from sloth eval.
Prints a markdown report and a last line of JSON; exit code 1 when a check fails.
"""
import argparse, json, os, sys

BF16_FACTOR = 1.5
FP32_REL_L2 = 1e-4
LOSS_REL = 2.0 ** -10  # a quarter of bf16's unit roundoff (2^-8)


def checks(r):
    """The pass rules (module docstring), applied to one row of measurements; returns whether all hold."""
    r["check_fp32"] = r["sloth_fp32_rel_l2"] <= FP32_REL_L2
    r["check_bf16_logits"] = r["sloth_bf16_rel_l2"] <= BF16_FACTOR * r["hf_bf16_rel_l2"]
    r["check_bf16_loss"] = abs(r["corpus_loss_sloth_bf16"] - r["corpus_loss_hf_fp32"]) <= LOSS_REL * abs(r["corpus_loss_hf_fp32"])
    return r["check_fp32"] and r["check_bf16_logits"] and r["check_bf16_loss"]


def render(rows, ok):
    print("# SlothSharp vs transformers + PEFT against a float32 truth\n")
    print(f"truth: transformers float32 (TF32 off) on the float32 `sloth dequant` weights; pass: SlothSharp fp32 logits rel L2 <= {FP32_REL_L2:g}; "
          f"SlothSharp bf16 logits rel L2 <= {BF16_FACTOR}x transformers bf16's; SlothSharp bf16 corpus loss within 2^-10 relative of the truth\n")
    print("| model | T | rel L2 vs fp32: transformers bf16 | SlothSharp bf16 | SlothSharp fp32 | max abs: transformers bf16 | SlothSharp bf16 | SlothSharp fp32 | top-1 agreement: transformers bf16 / SlothSharp bf16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['tokens']} | {r['hf_bf16_rel_l2']:.3e} | {r['sloth_bf16_rel_l2']:.3e} | {r['sloth_fp32_rel_l2']:.3e} | "
              f"{r['hf_bf16_max_abs']:.3f} | {r['sloth_bf16_max_abs']:.3f} | {r['sloth_fp32_max_abs']:.2e} | "
              f"{r['top1_agree_hf_bf16']:.3f} / {r['top1_agree_sloth_bf16']:.3f} |")
    print("\n| model | corpus eval loss: transformers fp32 | transformers bf16 | SlothSharp fp32 | SlothSharp bf16 | checks (fp32, bf16 logits, bf16 loss) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['corpus_loss_hf_fp32']:.5f} | {r['corpus_loss_hf_bf16']:.5f} | {r['corpus_loss_sloth_fp32']:.5f} | "
              f"{r['corpus_loss_sloth_bf16']:.5f} | {r['check_fp32']}, {r['check_bf16_logits']}, {r['check_bf16_loss']} |")
    print()
    print(json.dumps({"ok": ok, "rows": rows}))


def measure(a):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from peft import PeftModel
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peft_compare import read_documents, evaluate, load_tokenizer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def rel_l2(x, y):
        return ((x - y).norm() / y.norm()).item()

    def seq_loss(logits, ids):
        return torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:]).item()

    def load_model(base, adapter, dtype):
        m = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).cuda().eval()
        return PeftModel.from_pretrained(m, adapter).eval() if adapter else m

    tok, bos = load_tokenizer(a.base)
    docs = read_documents(a.data)
    sloth_loss = json.load(open(os.path.join(a.sloth, "losses.json")))
    rows = []
    for kind, adapter in (("base", None), ("lora", a.adapter)):
        dumps = {d: load_file(os.path.join(a.sloth, f"logits-{kind}-{d}.safetensors")) for d in ("bf16", "fp32")}
        ids = dumps["fp32"]["input_ids"].cuda()
        assert torch.equal(ids.cpu(), dumps["bf16"]["input_ids"]), "the two dumps were made on different ids"
        hf, corpus = {}, {}
        for name, dtype, base in (("fp32", torch.float32, a.base_fp32), ("bf16", torch.bfloat16, a.base)):
            model = load_model(base, adapter, dtype)
            with torch.no_grad():
                hf[name] = model(input_ids=ids).logits.float()
            corpus[name], _ = evaluate(model, tok, docs, bos, a.max_length)
            del model
            torch.cuda.empty_cache()
        truth = hf["fp32"]
        sl = {d: dumps[d]["logits"].cuda().float() for d in dumps}
        rows.append({
            "model": kind,
            "tokens": ids.shape[1],
            "hf_bf16_rel_l2": rel_l2(hf["bf16"], truth),
            "sloth_bf16_rel_l2": rel_l2(sl["bf16"], truth),
            "sloth_fp32_rel_l2": rel_l2(sl["fp32"], truth),
            "hf_bf16_max_abs": (hf["bf16"] - truth).abs().max().item(),
            "sloth_bf16_max_abs": (sl["bf16"] - truth).abs().max().item(),
            "sloth_fp32_max_abs": (sl["fp32"] - truth).abs().max().item(),
            "sloth_bf16_vs_hf_bf16_max_abs": (sl["bf16"] - hf["bf16"]).abs().max().item(),
            "top1_agree_sloth_bf16": (sl["bf16"].argmax(-1) == truth.argmax(-1)).float().mean().item(),
            "top1_agree_hf_bf16": (hf["bf16"].argmax(-1) == truth.argmax(-1)).float().mean().item(),
            "seq_loss_fp32_truth": seq_loss(truth, ids),
            "seq_loss_hf_bf16": seq_loss(hf["bf16"], ids),
            "seq_loss_sloth_bf16": seq_loss(sl["bf16"], ids),
            "seq_loss_sloth_fp32": seq_loss(sl["fp32"], ids),
            "corpus_loss_hf_fp32": corpus["fp32"],
            "corpus_loss_hf_bf16": corpus["bf16"],
            "corpus_loss_sloth_fp32": sloth_loss[f"{kind}-fp32"],
            "corpus_loss_sloth_bf16": sloth_loss[f"{kind}-bf16"],
        })
    return rows


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        rows = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])["rows"]
    else:
        p = argparse.ArgumentParser()
        p.add_argument("--base", required=True, help="dense bf16 copy of the NF4 weights (what SlothSharp computes with in bf16)")
        p.add_argument("--base-fp32", required=True, help="dense float32 copy of the NF4 weights (exact: the float32 truth)")
        p.add_argument("--adapter", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--sloth", required=True)
        p.add_argument("--max-length", type=int, default=1024)
        rows = measure(p.parse_args())
    ok = all([checks(r) for r in rows])
    render(rows, ok)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
