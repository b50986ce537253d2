#!/usr/bin/env python3
"""Writes tests/data/tokenizers/corpus.jsonl: the documents HfTokenizer is compared on against Hugging Face
tokenizers (tools/hf/tokenizer_reference.py). Deterministic: rerunning gives the same bytes.

    python3 tools/hf/make_tokenizer_corpus.py tests/data/tokenizers/corpus.jsonl
"""
import json
import random
import sys
import unicodedata

docs = []
add = docs.append

# Scripts
add("Héllo wörld, ça va? Ñandú, smørrebrød, Łódź, façade, naïve café — «quotes» and ‘curly’ ones.")
add("Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.")
add("Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα κόσμε!")
add("مرحبا بالعالم! هذه جملة عربية للاختبار، مع أرقام ١٢٣٤٥٦٧٨٩٠.")
add("שלום עולם! זהו משפט בעברית עם ניקוד: שָׁלוֹם.")
add("नमस्ते दुनिया! यह एक हिंदी वाक्य है। संख्या: १२३४५")
add("สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ")
add("你好，世界！这是一个中文句子，用于测试分词器。汉字没有空格。")
add("日本語のテキスト：ひらがな、カタカナ、漢字を混ぜた文です。ｶﾀｶﾅ半角も。")
add("안녕하세요 세계! 한국어 문장입니다. 띄어쓰기가 있습니다.")
add("Mixed: English, русский, ελληνικά, العربية, עברית, हिन्दी, ไทย, 中文, 日本語, 한국어.")
add("Tiếng Việt có rất nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ.")
add("Türkçe: İstanbul, ığdır, ŞŞşş; Deutsch: Straße, GROSSE; Ελληνικά: ς σ Σ.")
add("ﬁ ﬂ ﬀ ligatures, ① ② ③ circled, ² ³ superscripts, ½ ¼ fractions, Ⅻ roman, ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３.")
add("Math letters 𝐀𝐁𝐂 𝑥𝑦𝑧 𝟙𝟚𝟛 and CJK Ext-B 𠀀𠀁𠀂 and Gothic 𐌰𐌱.")
# Code
add("def fib(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\nif __name__ == '__main__':\n    print(fib(30))\n")
add("class Foo:\n\tdef __init__(self, x):\n\t\tself.x = x  # tab-indented\n\n\tdef __repr__(self):\n\t\treturn f\"Foo({self.x!r})\"\n")
add("using System;\r\n\r\nnamespace Demo\r\n{\r\n    public static class Program\r\n    {\r\n        public static int Main(string[] args)\r\n        {\r\n            Console.WriteLine($\"Hello {args.Length}\");\r\n            return 0;\r\n        }\r\n    }\r\n}\r\n")
add("{\n  \"name\": \"slothsharp\",\n  \"version\": \"1.2.3\",\n  \"tags\": [\"llm\", \"fine-tuning\"],\n  \"nested\": {\"a\": 1, \"b\": [true, false, null], \"c\": -3.14e-10}\n}")
add("#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  echo \"$f: $(wc -l < \"$f\")\" | tee -a log.txt\ndone\nexport PATH=\"$HOME/.local/bin:$PATH\" && cd /tmp || exit 1\n")
add("SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100 GROUP BY u.id HAVING n >= 3;")
add("<html>\n  <body class=\"main\">\n    <p>Hello &amp; goodbye &lt;3</p>\n  </body>\n</html>")
add("fn main() {\n    let v: Vec<i32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n")
add("x=1;y=2;z=x+y;if(z>2){return z;}else{return -1;}//comment\n/* block\n   comment */")
add("    leading four spaces\n\tleading tab\n  \t mixed indentation\t\ttrailing tabs\t\t\n")
# Whitespace
add("")
add(" ")
add("  ")
add("\n")
add("\n\n\n")
add("\r\n")
add("\t")
add(" leading space")
add("trailing space ")
add("   three leading and three trailing   ")
add("a  b   c    d     e      f       g")
add("line one\nline two\r\nline three\rline four\n\n\nline after blank lines\r\n\r\n")
add("spaces then newline   \n   spaces after newline")
add("\u00a0non-breaking\u00a0space\u2009thin\u2003em\u3000ideographic\u200bzero-width")
add("tabs\tbetween\t\twords\t\t\tand\tend\t")
add(" " * 40 + "x" + " " * 40)
add("\n" * 25 + "end")
add("mixed\r\n\r\n  \t\r\n\tws")
# Emoji
add("Emoji: 😀 😃 😄 🎉 🚀 ❤️ 👍🏽 🤷‍♀️")
add("Family ZWJ: 👨‍👩‍👧‍👦 👩‍❤️‍💋‍👨 🏳️‍🌈 🏴‍☠️")
add("Flags: 🇫🇷 🇩🇪 🇯🇵 🇺🇸 🇧🇷 🏴󠁧󠁢󠁳󠁣󠁴󠁿")
add("Keycaps 1️⃣ 2️⃣ #️⃣ and skin tones 👋🏻👋🏼👋🏽👋🏾👋🏿")
add("😀😀😀😀😀😀😀😀😀😀")
# Numbers
add("1234567890")
add("3.14159265358979323846264338327950288419716939937510")
add("Phone +1 (555) 123-4567, ZIP 90210, year 2024, 1,000,000.00 USD, 0x1F, 1e-9, -42")
add("123456789012345678901234567890123456789012345678901234567890")
add("v1.2.3-beta.4+build.567 and 10:45:30 on 2024-12-31")
add("Arabic-Indic ٠١٢٣٤٥٦٧٨٩ and Devanagari ०१२३४५६७८९ and fullwidth ０１２３")
# Special tokens in text
add("<|begin_of_text|>Hello<|end_of_text|>")
add("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>")
add("<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n")
add("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
add("<s>[INST] What is the capital of France? [/INST] Paris</s>")
add("<bos><eos><pad><unk> and <mask> around text")
add("<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜>Hi<｜end▁of▁sentence｜>")
add("<|startoftext|><|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>")
add(" <|im_start|> spaced special <|im_end|> ")
add("partial <|im_start and <|eot_id and <start_of_turn but not closed")
add("<think>\nreasoning here\n</think>\n\nanswer")
add("text<|endoftext|>more text<|endoftext|>")
add("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>")
# Combining marks
add(unicodedata.normalize("NFC", "café résumé naïve Ångström ñ ü"))
add(unicodedata.normalize("NFD", "café résumé naïve Ångström ñ ü"))
add("e\u0301 a\u0308 o\u0302\u0323 \u1e9b\u0323 K\u212b \u2126")
add(unicodedata.normalize("NFD", "한국어 Hangul decomposed"))
add("Zalgo: Z\u0351\u036b\u0343\u036a\u0302a\u0350l\u0357g\u0308o\u0315")
add("\u0915\u094d\u0937 \u0926\u0947\u0935\u0928\u093e\u0917\u0930\u0940 \u0930\u094d\u092f")
# Noncharacters and odd code points
add("before\ufffeafter")
add("\ufeffBOM at start")
add("replacement \ufffd char and \uffff max BMP")
add("private use \ue000\uf8ff and \U000f0000")
add("control\x00chars\x01\x07\x1b[0m\x7f here")
add("a\u200db\u200cc\u2060d")
add("right-to-left \u202eoverride\u202c and \u200fmark")
# Lone surrogates (skipped by the reference; must not throw)
add("lone high \ud800 surrogate")
add("lone low \udc00 surrogate")
add("reversed pair \udc00\ud800 end")
# Punctuation and contractions
add("I'm, you're, he's, we've, they'll, she'd, can't, won't, DON'T, I'M, O'Neil's")
add("Hello!!! What??? Yes... no—maybe; (really) [sure] {ok} <tag> \"quoted\" 'single' `code` ~tilde ^caret")
add("https://example.com/path?query=1&b=2#frag user@example.org C:\\Windows\\System32")
add("----- ===== ***** ##### _____ ..... ,,,,, ;;;;; ::::")
add("a.b.c a,b,c a;b;c a:b:c a/b/c a\\b\\c a|b|c")
add("¿Qué? ¡Sí! «Très bien» „Gut“ ‚ok‘ 「日本」 『二重』 【括弧】")
add("Markdown: # Title\n\n* item **bold** _italic_ `code`\n\n> quote\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
add("LaTeX: $\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}$ and \\begin{align} a &= b \\\\ c &= d \\end{align}")

rng = random.Random(20241206)
pool = ["'s", "'S", "'ll", "'", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "a", "Z", "é", "e\u0301", "ß", "я", "中",
        "한", "ア", "1", "23", "4567", "٣", "½", "𝟙", "𝐀", "😀", "👩‍👩‍👧", "🇫🇷", "\ufe0f", "!", "...", "—", "\"", "(", "{",
        "<|endoftext|>", "<|eot_id|>", "<start_of_turn>", "<|im_start|>", "<s>", "</s>", "▁", "▁▁", "<0x41>", "Ġ", "don't",
        " Hello", " the", "ing", "\u0301", "\ufffe", "ǅ", "ﬁ"]
for _ in range(24):
    add("".join(rng.choice(pool) for _ in range(rng.randint(1, 30))))

# Long documents
para = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
        "Sphinx of black quartz, judge my vow! 1234 5678 90. ")
add((para * 60).strip())
add("\n".join(f"{i:5d}\tline {i} of a long file with value {i * i} and ratio {i / 7:.6f}" for i in range(400)))
add(" ".join(["Съешь ещё этих мягких французских булок"] * 50) + "\n" + "中文段落测试。" * 80)
add(("def f%d(x):\n    return x * %d  # comment\n\n" * 100) % tuple(v for i in range(100) for v in (i, i)))
add("🎉 party " * 200)

with open(sys.argv[1], "w", encoding="utf-8", newline="\n") as f:
    for d in docs:
        # Lone surrogates cannot be written as UTF-8: such documents are written with \\uXXXX escapes.
        lone = any(0xD800 <= ord(c) <= 0xDFFF for c in d)
        f.write(json.dumps({"text": d}, ensure_ascii=lone) + "\n")
print(f"{sys.argv[1]}: {len(docs)} documents")
