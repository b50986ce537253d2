#!/usr/bin/env python3
"""Hugging Face `tokenizers` ids for SlothSharp's tokenizer tests (run where the tokenizers package is installed,
e.g. the GPU machine). Encodes a text file (read as UTF-8, newlines kept) with each named tokenizer.json, without
special tokens (HfTokenizer.Encode(text, addBos: false)), both as one string and line by line (lines split after
each "\n", so each keeps its newline), and writes the JSON the tests compare against:

    python3 tools/hf/tokenize_check.py tests/data/hf-tiny-llama/tokenizer-mixed.txt \
        hf-tiny-llama=tests/data/hf-tiny-llama/nf4/tokenizer.json \
        llama3-style=tests/data/llama3-style-tokenizer/tokenizer.json \
        > tests/data/hf-tiny-llama/tokenizer-mixed-expected.json

Output: {"text_sha256": hex, "tokenizers_version": str, "<name>": {"whole": [ids], "lines": [[ids], ...],
"decoded_whole": str}, ...}. TokenizerGoldenTests reads it when present (and checks text_sha256).
"""
import hashlib, json, sys

import tokenizers
from tokenizers import Tokenizer


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    raw = open(sys.argv[1], "rb").read()
    text = raw.decode("utf-8")
    lines = [l + "\n" for l in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    lines = [l for l in lines if l]
    out = {"text_sha256": hashlib.sha256(raw).hexdigest(), "tokenizers_version": tokenizers.__version__}
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        tok = Tokenizer.from_file(path)
        whole = tok.encode(text, add_special_tokens=False).ids
        out[name] = {
            "whole": whole,
            "lines": [tok.encode(l, add_special_tokens=False).ids for l in lines],
            "decoded_whole": tok.decode(whole, skip_special_tokens=False),
        }
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
