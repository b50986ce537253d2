#!/usr/bin/env python3
"""Reference ids of Hugging Face `tokenizers` / `transformers` for the HfTokenizer corpus test.

    python3 tokenizer_reference.py TOKENIZER_DIR CORPUS.jsonl OUT.json

TOKENIZER_DIR holds tokenizer.json (+ tokenizer_config.json). CORPUS.jsonl has one {"text": ...} per line. For each
document OUT.json gets
  ids_plain    tokenizers.Tokenizer.encode(text, add_special_tokens=False).ids
  ids_special  what transformers' tokenizer gives with add_special_tokens=True (AutoTokenizer, else
               PreTrainedTokenizerFast over tokenizer.json; if transformers is missing: tokenizers with
               add_special_tokens=True, and "ids_special_source" says so)
  decoded      tokenizers.Tokenizer.decode(ids_plain, skip_special_tokens=False)
Documents holding lone surrogates cannot pass through Rust strings: they get {"skipped": "lone surrogate"} and the C#
test only checks that encoding them does not throw. Versions of the libraries are written next to the results.
"""
import json
import os
import sys


def has_lone_surrogate(text):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    tok_dir, corpus_path, out_path = sys.argv[1:]
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))

    hf = None
    source = "tokenizers (transformers not installed)"
    versions = {"tokenizers": tokenizers.__version__}
    try:
        import transformers
        versions["transformers"] = transformers.__version__
        try:
            hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
            source = f"transformers.AutoTokenizer ({type(hf).__name__})"
        except Exception as e:  # an unknown tokenizer_class, a missing sentencepiece, ...
            print(f"AutoTokenizer failed ({e}); using PreTrainedTokenizerFast", file=sys.stderr)
            hf = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"))
            source = "transformers.PreTrainedTokenizerFast"
    except ImportError:
        pass

    docs = []
    with open(corpus_path, encoding="utf-8", errors="surrogatepass") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                docs.append((line_no, json.loads(line)["text"]))

    results = []
    for line_no, text in docs:
        if has_lone_surrogate(text):
            results.append({"line": line_no, "skipped": "lone surrogate"})
            continue
        plain = tok.encode(text, add_special_tokens=False).ids
        if hf is not None:
            special = hf(text, add_special_tokens=True)["input_ids"]
            hf_plain = hf(text, add_special_tokens=False)["input_ids"]
        else:
            special = tok.encode(text, add_special_tokens=True).ids
            hf_plain = plain
        entry = {"line": line_no, "ids_plain": plain, "ids_special": special,
                 "decoded": tok.decode(plain, skip_special_tokens=False)}
        if hf_plain != plain:  # transformers rebuilt the pipeline differently; worth knowing
            entry["ids_plain_transformers"] = hf_plain
        results.append(entry)

    import hashlib
    with open(corpus_path, "rb") as f:
        corpus_sha256 = hashlib.sha256(f.read()).hexdigest()
    out = {"tokenizer_dir": os.path.abspath(tok_dir), "corpus": os.path.basename(corpus_path), "corpus_sha256": corpus_sha256,
           "ids_special_source": source, "versions": versions, "documents": results}
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True)
    os.replace(tmp, out_path)
    print(f"{out_path}: {len(results)} documents ({source})")


if __name__ == "__main__":
    main()
