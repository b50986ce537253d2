#!/usr/bin/env bash
# Issue 23 on the GPU machine (its CPU cores, not the GPU): HfTokenizer's tokens/s (bench --suite tokenizer) beside
# Hugging Face tokenizers' encode_batch on the same corpus (the corpus repeated 20 times with a counter, as the bench
# builds it), both with 2 threads and with every core. Run through gpu-run's extra-step hook. Writes
# $OUT/tokenizer-speed.txt.
set -uo pipefail
OUT="${1:?usage: tokenizer-speed.sh OUTDIR}"
{
  echo "== SlothSharp HfTokenizer (bench --suite tokenizer --threads 2)"
  dotnet "$SLOTHSHARP_APPS/SlothSharp.Bench/SlothSharp.Bench.dll" --suite tokenizer --threads 2 2>&1
  for threads in 2 all; do
    echo "== Hugging Face tokenizers encode_batch, RAYON_NUM_THREADS=$threads"
    ( [ "$threads" = all ] || export RAYON_NUM_THREADS=$threads
      python3 - <<'PY'
import glob, gzip, json, os, time, tokenizers
root = "tests/data/tokenizers"
docs = [json.loads(l)["text"] for l in open(f"{root}/corpus.jsonl", encoding="utf-8", errors="surrogatepass") if l.strip()]
docs = [d for d in docs if not any(0xD800 <= ord(c) <= 0xDFFF for c in d)]
docs = [f"[{r}] {d}" for r in range(20) for d in docs]
for d in sorted(glob.glob(f"{root}/*/tokenizer.json.gz")):
    name = d.split("/")[-2]
    tok = tokenizers.Tokenizer.from_str(gzip.open(d, "rt", encoding="utf-8").read())
    tok.encode_batch(docs[:100])
    s = time.perf_counter(); enc = tok.encode_batch(docs); e = time.perf_counter() - s
    n = sum(len(x.ids) for x in enc)
    print(f"{name:14} {n:10} tokens {n / e:14,.0f} tokens/s")
PY
    )
  done
} > "$OUT/tokenizer-speed.txt" 2>&1
cat "$OUT/tokenizer-speed.txt"
