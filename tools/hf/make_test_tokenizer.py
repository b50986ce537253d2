#!/usr/bin/env python3
"""Writes tests/data/llama3-style-tokenizer/: a small byte-level BPE tokenizer in Llama 3's tokenizer.json layout
(Split with Llama 3's regex + ByteLevel, ignore_merges, "a b" merges, BOS template, <|eot_id|> etc.), trained here
with a plain BPE trainer on tests/data/hf-tiny-llama/tokenizer-mixed.txt so that merges fire on the mixed text
(multi-byte characters included). Plain Python, no tokenizers package needed. Deterministic.

    python3 tools/hf/make_test_tokenizer.py
"""
import collections, json, os, re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = os.path.join(ROOT, "tests/data/hf-tiny-llama/tokenizer-mixed.txt")
OUT = os.path.join(ROOT, "tests/data/llama3-style-tokenizer")
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
MERGES = 700


def byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    b2u = byte_to_unicode()
    text = open(TEXT, encoding="utf-8", newline="").read()
    # A rough pre-split is enough for training (the merges only need to be valid and to fire).
    words = collections.Counter("".join(b2u[b] for b in w.encode("utf-8")) for w in re.findall(r" ?\w+| ?[^\s\w]+|\s+", text))
    vocab = {b2u[b]: i for i, b in enumerate(sorted(range(256), key=lambda b: ord(b2u[b])))}
    splits = {w: list(w) for w in words}
    merges = []
    for _ in range(MERGES):
        pairs = collections.Counter()
        for w, f in words.items():
            s = splits[w]
            for a, b in zip(s, s[1:]):
                pairs[a, b] += f
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.setdefault(a + b, len(vocab))
        for w in words:
            s, out, i = splits[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
    # Whole words the merges do not reach: with ignore_merges a pre-token equal to one of them is that one token.
    for w in [" lazy", " paresseux", " biblioteca", " Hund", " dog", "Hello"]:
        vocab.setdefault("".join(b2u[b] for b in w.encode("utf-8")), len(vocab))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_0|>"]
    added = [{"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    bos = added[0]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos["content"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos["content"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos["content"], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos["content"]: {"id": bos["content"], "ids": [bos["id"]], "tokens": [bos["content"]]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tokenizer_class": "PreTrainedTokenizerFast",
                   "model_max_length": 131072}, f, indent=1)
    print(f"{OUT}: {len(vocab)} vocab, {len(merges)} merges, {len(added)} added tokens")


if __name__ == "__main__":
    main()
