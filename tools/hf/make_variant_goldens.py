"""Dense float32 goldens for configuration variants of every supported family, written by transformers (never by
SlothSharp): the shapes and options the public tiny checkpoints do not cover (partial rotary, longrope on both sides of
original_max_position_embeddings, yarn, linear and llama3 RoPE, Qwen2 sliding layers, Gemma 3 linear-scaled global
RoPE and 5:1 layer pattern, biases, head_dim absent, ...).
Usage (any machine with transformers 5 + torch; CPU is enough): make_variant_goldens.py OUTDIR
For each variant: OUTDIR/<name>/{config.json, model.safetensors (float32)} and expected.json with the float32 logits
(eager attention) of a right-padded batch and a greedy continuation."""
import json, os, sys, torch
import transformers as T
from safetensors.torch import save_file

out = sys.argv[1]
V = 96
common = dict(vocab_size=V, bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=256)
variants = {
 "llama-bias-linear": lambda: (T.LlamaConfig(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
     num_key_value_heads=2, attention_bias=True, mlp_bias=True, rope_scaling={"rope_type": "linear", "factor": 2.0},
     tie_word_embeddings=False, **common), T.LlamaForCausalLM),
 "llama-yarn": lambda: (T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
     num_key_value_heads=4, rope_theta=10000.0, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
     **common), T.LlamaForCausalLM),
 "qwen2-sliding": lambda: (T.Qwen2Config(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
     num_key_value_heads=2, use_sliding_window=True, sliding_window=5, max_window_layers=1, tie_word_embeddings=True, **common),
     T.Qwen2ForCausalLM),
 "qwen3-yarn": lambda: (T.Qwen3Config(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
     num_key_value_heads=2, head_dim=24, rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16},
     tie_word_embeddings=False, **common), T.Qwen3ForCausalLM),
 "mistral-nohd": lambda: (T.MistralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
     num_key_value_heads=2, head_dim=None, sliding_window=None, **common), T.MistralForCausalLM),
 "gemma2-3l": lambda: (T.Gemma2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
     num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, attn_logit_softcapping=20.0, final_logit_softcapping=None,
     sliding_window=4, hidden_activation="gelu_pytorch_tanh", **common), T.Gemma2ForCausalLM),
 "gemma3-6l": lambda: (T.Gemma3TextConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=7, num_attention_heads=4,
     num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=6,
     rope_scaling={"rope_type": "linear", "factor": 8.0}, **common), T.Gemma3ForCausalLM),
 "phi3-partial-longrope": lambda: (T.Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
     num_key_value_heads=2, partial_rotary_factor=0.5, original_max_position_embeddings=24, sliding_window=12,
     rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.7], "long_factor": [1.5, 2.5, 3.0, 4.0]},
     tie_word_embeddings=True, **common), T.Phi3ForCausalLM),
 "phi3-075": lambda: (T.Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
     num_key_value_heads=4, partial_rotary_factor=0.75, original_max_position_embeddings=256, **common), T.Phi3ForCausalLM),
}
g = torch.Generator().manual_seed(11)
lengths = [40, 17, 29]          # right-padded to 40; 40 > every original_max_position_embeddings above
seq = max(lengths)
ids = torch.randint(3, V, (len(lengths), seq), generator=g)
mask = torch.zeros_like(ids)
for i, n in enumerate(lengths): mask[i, :n] = 1
ids = ids.masked_fill(mask == 0, 0)
summary = {}
for name, make in variants.items():
    try:
        torch.manual_seed(5)
        cfg, cls = make()
        cfg._attn_implementation = "eager"
        m = cls(cfg).float().eval()
        with torch.no_grad():
            for n, p in m.named_parameters():
                if p.dim() == 2: p.normal_(0, 0.1)
                elif "norm" in n: p.normal_(0.0 if "gemma" in name else 1.0, 0.1)
                else: p.normal_(0, 0.05)
        d = os.path.join(out, name); os.makedirs(d, exist_ok=True)
        m.save_pretrained(d, safe_serialization=True)
        with torch.no_grad():
            logits = m(input_ids=ids, attention_mask=mask).logits.float()
            short = m(input_ids=ids[1:2, :12]).logits.float()   # a short sequence (longrope: below the original length)
            prompt = ids[2:3, :6]
            gen = m.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False,
                             eos_token_id=None, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
            # Greedy by full forwards without a cache: the model's own definition of the continuation. generate()
            # of transformers 5.17 departs from it for Phi-3 longrope past original_max_position_embeddings (it then
            # feeds the newest token alone), so SlothSharp's tests compare against these ids there.
            seq, ref_margins = prompt.clone(), []
            for _ in range(24):
                last = m(input_ids=seq).logits[0, -1].float()
                ref_margins.append(float(last.topk(2).values[0] - last.topk(2).values[1]))
                seq = torch.cat([seq, last.argmax().view(1, 1)], dim=1)
        logit_list = [logits[i, :n].tolist() for i, n in enumerate(lengths)]
        info = {"name": name, "input_ids": ids.tolist(), "lengths": lengths, "logits": logit_list,
                "short_ids": ids[1, :12].tolist(), "short_logits": short[0].tolist(),
                "prompt_ids": prompt[0].tolist(), "generate_ids": gen.sequences[0].tolist(),
                "generate_top2_margins": [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in gen.scores],
                "full_forward_ids": seq[0].tolist(), "full_forward_top2_margins": ref_margins,
                "transformers_version": T.__version__, "config": json.load(open(os.path.join(d, "config.json")))}
        json.dump(info, open(os.path.join(d, "expected.json"), "w"))
        summary[name] = "ok"
    except Exception as e:
        import traceback; traceback.print_exc()
        summary[name] = f"failed: {type(e).__name__}: {e}"
print(json.dumps(summary, indent=1))
