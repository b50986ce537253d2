#!/usr/bin/env python3
"""Renders every (chat template x conversation x add_generation_prompt) case with Python Jinja2 exactly as
transformers' apply_chat_template does, and writes tests/data/templates/goldens.json for the C# tests
(tests/Templates/ChatTemplateGoldenTests.cs), which compare byte for byte.

The environment mirrors transformers (utils/chat_template_utils.py): ImmutableSandboxedEnvironment with
trim_blocks/lstrip_blocks, the loopcontrols extension, a `generation` tag that records the character span of its
rendered body, json.dumps-based tojson, and the globals raise_exception and strftime_now (fixed clock here).

Second oracle: @huggingface/jinja (npm). Pass --hf-jinja DIR (a folder where `npm install @huggingface/jinja` was
run, outside the repository); every case is rendered there too and the agreement is recorded per case
("hf_jinja": "agree" | "differs" | "error") and summarised on stdout.

Usage: python3 tools/templates/make_template_goldens.py [--hf-jinja /tmp/hfjinja]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "templates")
BUILTIN = os.path.join(ROOT, "src", "Api", "Templates", "BuiltIn")

# The clock strftime_now reads; the C# test injects the same instant (local time = UTC there).
FIXED_NOW = datetime(2024, 7, 26, 9, 5, 3)


class TemplateError(Exception):
    """raise_exception('...') in a template."""


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %}: renders the body through a caller and records where it landed."""
    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.blocks = None
        self.spans = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_record"), [], [], body).set_lineno(lineno)

    def _record(self, caller):
        text = caller()
        if self.blocks is not None:
            start = len("".join(self.blocks))
            self.spans.append((start, start + len(text)))
        return text


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def utf16_offset(text, index):
    """Python's code-point index -> the UTF-16 offset .NET strings use."""
    return len(text[:index].encode("utf-16-le")) // 2


def render(env, template, variables):
    tracker = next(e for e in env.extensions.values() if isinstance(e, GenerationTracker))
    blocks, spans = [], []
    tracker.blocks, tracker.spans = blocks, spans
    try:
        for block in template.generate(**variables):
            blocks.append(block)
    finally:
        tracker.blocks = tracker.spans = None
    text = "".join(blocks)
    return text, [[utf16_offset(text, s), utf16_offset(text, e)] for s, e in spans]


# ---- templates: (name, file, special tokens as transformers passes them) ----

def real(name, file, **tokens):
    return {"name": name, "file": file, "tokens": tokens}


TEMPLATES = [
    real("llama2", "llama2.jinja", bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
    real("llama3", "llama3.jinja", bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"),
    real("llama3_1", "llama3_1.jinja", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
    real("llama3_2", "llama3_2.jinja", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
    real("qwen2_5", "qwen2_5.jinja", eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    real("qwen3", "qwen3.jinja", eos_token="<|im_end|>", pad_token="<|endoftext|>"),
    real("gemma3", "gemma3.jinja", bos_token="<bos>", eos_token="<end_of_turn>", pad_token="<pad>", unk_token="<unk>"),
    real("deepseek_v3", "deepseek_v3.jinja", bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
         pad_token="<｜end▁of▁sentence｜>"),
    real("mistral_nemo", "mistral_nemo.jinja", bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
    real("phi3_mini", "phi3_mini.jinja", bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>"),
    real("phi4", "phi4.jinja", bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|dummy_87|>"),
]
BUILTIN_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}
BUILTINS = ["chatml", "llama-3", "gemma", "mistral", "phi-3", "qwen-2.5", "alpaca"]

# ---- conversations ----

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time (24h) in a time zone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}, "precision": {"type": "integer", "default": 0}}}}}

CONVERSATIONS = {
    "system_multiturn": {"messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And times 3?"},
    ]},
    "no_system": {"messages": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the GPU cross the road? To get to the other tensor."},
    ]},
    "single_user": {"messages": [{"role": "user", "content": "  Summarise this, please.  \n"}]},
    "tools": {"tools": [WEATHER_TOOL, TIME_TOOL], "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather in Paris, in celsius?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call0Abc9", "type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "call0Abc9", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21.5 °C and clear in Paris."},
        {"role": "user", "content": "Thanks!"},
    ]},
    "tools_parallel": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Oslo and Lima?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "callOslo1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"id": "callLima2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]},
        {"role": "tool", "tool_call_id": "callOslo1", "content": "-3"},
        {"role": "tool", "tool_call_id": "callLima2", "content": "19"},
    ]},
    "tools_string_args": {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Kyiv?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "callKyiv7", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Kyiv\"}"}}]},
        {"role": "tool", "tool_call_id": "callKyiv7", "content": "12 degrees"},
    ]},
    "thinking": {"messages": [
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "reasoning_content": "91 = 7 * 13.", "content": "No: 91 = 7 × 13."},
        {"role": "user", "content": "Is 97 prime?"},
        {"role": "assistant", "content": "<think>\nCheck 2, 3, 5, 7.\n</think>\n\nYes, 97 is prime."},
        {"role": "user", "content": "And 221?"},
    ]},
    "thinking_off": {"variables": {"enable_thinking": False}, "messages": [
        {"role": "user", "content": "Quick: capital of Japan?"},
    ]},
    "thinking_on": {"variables": {"enable_thinking": True}, "messages": [
        {"role": "system", "content": "Think step by step."},
        {"role": "user", "content": "Quick: capital of Japan?"},
    ]},
    "content_parts": {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "text", "text": "a cat."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Small, furry, independent."}]},
        {"role": "user", "content": [{"type": "text", "text": "And a dog?"}]},
    ]},
    "unicode_quotes": {"messages": [
        {"role": "system", "content": "Réponds en français 🇫🇷; 中文也可以。"},
        {"role": "user", "content": "Quote: \"it's\" — 'fine'\\n? Line1\nLine2\ttab {{ not_a_tag }} {% raw %}"},
        {"role": "assistant", "content": "D'accord 👍🏽 — «ok»\n\n日本語: こんにちは 😀"},
        {"role": "user", "content": "Emoji only: 🧪🧬"},
    ]},
    "bad_alternation": {"messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ]},
}

GENERATION_PROMPT = [False, True]

# ---- engine snippets: one feature each, rendered with the same environment ----
SNIPPET_VARS = {
    "s": "  Hello, World!  ", "n": 7, "f": 2.5, "neg": -7, "big": 12345678901234, "t": True, "none": None,
    "xs": [3, 1, 2], "words": ["b", "A", "c", "a"], "empty": [],
    "d": {"role": "user", "content": "hi", "n": 2, "nested": {"k": [1, {"z": None}]}},
    "msgs": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
             {"role": "assistant", "content": "A1", "tool_calls": [{"function": {"name": "f"}}]},
             {"role": "user", "content": "U2"}],
    "u": "héllo wörld 😀 日本",
}
SNIPPETS = [
    # output and Python str()
    "{{ s }}|{{ n }}|{{ f }}|{{ t }}|{{ none }}|{{ xs }}|{{ d }}|{{ missing }}|",
    "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 10 / 4 }} {{ 10 // 4 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 7 }}",
    "{{ [1, 'a', none, true, 2.0, [\"it's\"], {'k': 'v'}] }}",
    "{{ ('a', 1) }} {{ (1,) }} {{ () }}",
    "{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'x' + 'y' }}",
    "{{ 'tab\\there' }} {{ \"q'\" }} {{ '\\u00e9\\x41\\n|' }} {{ 'adj' 'acent' }}",
    # comparisons, logic, membership
    "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ none == none }} {{ 1 != 2 }}",
    "{{ 'ell' in s }} {{ 3 in xs }} {{ 'role' in d }} {{ 'x' not in d }} {{ 'a' in missing }}",
    "{{ 0 or 'fallback' }} {{ 'first' and 'second' }} {{ not none }} {{ not xs }} {{ empty or 'e' }}",
    "{{ 'yes' if t else 'no' }} {{ 'yes' if none else 'no' }} [{{ 'x' if none }}]",
    # attribute / item access
    "{{ d.role }} {{ d['content'] }} {{ d.nested.k[1].z }} {{ d.get('n') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }} {{ xs[-1] }} {{ xs.0 }}",
    "{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list | length }}",
    "{{ xs[::-1] }} {{ xs[1:] }} {{ xs[:1] }} {{ s[2:7] }} {{ u[::-1] }} {{ u[-2:] }} {{ msgs[1:-1] | length }}",
    "{{ d.missing is defined }} {{ d.missing is undefined }} {{ missing is not defined }} {{ d.role is defined }}",
    # string methods
    "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ 'xxhixx'.strip('x') }}] {{ s.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }}",
    "{{ s.upper() }} {{ s.lower() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }}",
    "{{ s.startswith('  He') }} {{ s.endswith('!  ') }} {{ 'abc'.startswith(('x', 'a')) }} {{ '{} and {}'.format(1, 'two') }} {{ '{0}{0}{n}'.format('a', n=3) }}",
    "{{ ', '.join(['a', 'b']) }} {{ 'banana'.count('an') }} {{ 'banana'.find('n') }} {{ u.find('😀') }} {{ 'abc'.rstrip('c') }}",
    # filters
    "[{{ s | trim }}] {{ xs | length }} {{ u | length }} {{ xs | join('-') }} {{ words | join }} {{ xs | first }} {{ xs | last }} {{ xs | list }}",
    "{{ missing | default('dv') }} {{ '' | default('dv') }} {{ '' | default('dv', true) }} {{ none | d('x') }} {{ 0 | d(5, boolean=true) }}",
    "{{ s | upper }} {{ s | lower }} {{ 'hello wORLD' | title }} {{ 'hello' | capitalize }} {{ s | replace('o', '0') }} {{ 42 | string }} {{ none | string }}",
    "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(9) }} {{ 3.9 | int }} {{ '0x1A' | int(0, 16) }} {{ '2.5' | float }} {{ -3 | abs }}",
    "{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}",
    "{{ msgs | selectattr('tool_calls', 'defined') | list | length }} {{ msgs | selectattr('tool_calls', 'undefined') | map(attribute='role') | join(',') }}",
    "{{ xs | select('odd') | list }} {{ xs | reject('odd') | list }} {{ xs | map('string') | join('') }} {{ words | unique | list }} {{ words | sort | list }} {{ xs | sort(reverse=true) }}",
    "{{ d | items | list }} {{ missing | items | list }} {{ xs | reverse | list }} {{ xs | sum }} {{ xs | min }} {{ xs | max }} {{ 2.567 | round(1) }} {{ 2.5 | round }}",
    "{{ d | tojson }} {{ xs | tojson }} {{ u | tojson }} {{ 'q\"\\\\\\n' | tojson }} {{ none | tojson }} {{ 1.0 | tojson }} {{ {'a': [1, {'b': true}]} | tojson(indent=2) }}",
    "{{ d | tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ u | tojson(ensure_ascii=true) }} {{ [] | tojson(indent=2) }} {{ {} | tojson }}",
    "{{ 'a\\nb\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}",
    # tests
    "{{ s is string }} {{ n is number }} {{ n is integer }} {{ f is float }} {{ t is boolean }} {{ d is mapping }} {{ xs is sequence }} {{ xs is iterable }} {{ n is string }}",
    "{{ none is none }} {{ t is true }} {{ none is false }} {{ n is odd }} {{ n is even }} {{ n is divisibleby 7 }} {{ 'a' is equalto 'a' }} {{ n is eq 7 }} {{ xs is not mapping }}",
    "{{ n is gt 3 }} {{ n is lt(3) }} {{ 'a' is in 'abc' }} {{ 'ABC' is upper }} {{ s is lower }} {{ t is sameas true }} {{ 1 is sameas true }} {{ missing is iterable }}",
    # statements
    "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}|{% if none %}x{% else %}y{% endif %}",
    "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }};{% endfor %}",
    "{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{{ loop.cycle('a', 'b') }};{% endfor %}",
    "{% for x in xs if x > 1 %}{{ x }}:{{ loop.length }}:{{ loop.last }};{% endfor %}{% for x in empty %}no{% else %}empty{% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }},{% endfor %}|{% for c in 'ab😀' %}[{{ c }}]{% endfor %}",
    "{% for x in xs %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}|{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}",
    "{% set a = 1 %}{% for x in xs %}{% set a = x %}{% endfor %}{{ a }}|{% if t %}{% set b = 2 %}{% endif %}{{ b }}",
    "{% set ns = namespace(total=0, seen=[]) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% endfor %}{{ ns.total }}",
    "{% set x, y = [1, 2] %}{{ x }}{{ y }}|{% set tup = 1, 2 %}{{ tup }}|{% set blk %}in {{ n }} block{% endset %}[{{ blk }}]",
    "{% set up | upper %}shout {{ s | trim }}{% endset %}{{ up }}|{% filter upper %}filtered {{ n }}{% endfilter %}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }}",
    "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner {{ n }}{% endcall %}|{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}",
    "{% set d2 = dict(a=1, b='x') %}{{ d2 }} {{ namespace(a=1).a }} {{ {'k': 1}.k }} {{ {1: 'one'}[1] }}",
    "{# a comment #}A{#- trimmed -#}  B {{- ' C ' -}}  D {%- if t %} E {% endif -%} F",
    "line1\n  {% if t %}\n  indented\n  {% endif %}\nline2\n    {%+ if t %}kept{% endif %}\n{% raw %}{{ not parsed }}{% endraw %}\n",
    "{%- for m in msgs -%}\n    {%- if m.role == 'user' %}\n        U:{{ m.content }}\n    {%- else %}\n        O:{{ m.content }}\n    {% endif %}\n{% endfor %}\n",
    "{% generation %}gen {{ n }}{% endgeneration %} mid {% generation %}😀x{% endgeneration %}",
    "{{ strftime_now('%Y-%m-%d %H:%M:%S %d %b %Y %B %A %a %j %p %I') }}",
    # errors
    "{{ d.missing.deeper }}",
    "{{ 'a' + 1 }}",
    "{{ missing + 1 }}",
    "{{ xs.append(4) }}",
    "{{ raise_exception('Bad input: ' ~ n) }}",
]


def snippet_goldens(env):
    out = []
    for src in SNIPPETS:
        case = {"source": src}
        try:
            text, spans = render(env, env.from_string(src), dict(SNIPPET_VARS))
            case.update(text=text, spans=spans)
        except TemplateError as e:
            case.update(error="raise_exception", message=str(e))
        except Exception as e:
            case.update(error="runtime", message=f"{type(e).__name__}: {e}")
        out.append(case)
    return out


def cases():
    for t in TEMPLATES:
        yield t["name"], os.path.join(DATA, t["file"]), t["tokens"]
    for b in BUILTINS:
        yield "builtin:" + b, os.path.join(BUILTIN, b + ".jinja"), BUILTIN_TOKENS


def hf_jinja_render(hf_dir, jobs):
    """Renders jobs [{source, variables}] with @huggingface/jinja; returns text or {"error": msg} per job."""
    script = r"""
const fs = require('fs');
const { Template } = require(process.argv[2] + '/node_modules/@huggingface/jinja');
const jobs = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const out = [];
for (const job of jobs) {
  try {
    const t = new Template(job.source);
    const vars = job.variables;
    out.push({ text: t.render(vars) });
  } catch (e) { out.push({ error: String(e && e.message || e) }); }
}
fs.writeFileSync(process.argv[4], JSON.stringify(out));
"""
    with tempfile.TemporaryDirectory() as tmp:
        js, inp, outp = (os.path.join(tmp, n) for n in ("r.js", "in.json", "out.json"))
        open(js, "w").write(script)
        json.dump(jobs, open(inp, "w"))
        subprocess.run(["node", js, hf_dir, inp, outp], check=True)
        return json.load(open(outp))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf-jinja", help="folder with node_modules/@huggingface/jinja (second oracle)")
    args = ap.parse_args()

    env = make_env()
    results = []
    jobs = []
    for name, path, tokens in cases():
        source = open(path, encoding="utf-8").read()
        template = env.from_string(source)
        for conv_name, conv in CONVERSATIONS.items():
            for agp in GENERATION_PROMPT:
                variables = dict(tokens)
                variables.update(conv.get("variables", {}))
                variables.update(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                                 add_generation_prompt=agp)
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": agp}
                try:
                    text, spans = render(env, template, variables)
                    case.update(text=text, spans=spans)
                except TemplateError as e:
                    case.update(error="raise_exception", message=str(e))
                except Exception as e:  # a runtime error of the template (e.g. list content where it wants a str)
                    case.update(error="runtime", message=f"{type(e).__name__}: {e}")
                results.append(case)
                # @huggingface/jinja has its own raise_exception and strftime_now (real clock, not replaceable):
                # templates that read the date (Llama 3.2) get the fixed date as date_string there instead.
                hf_vars = dict(variables)
                if "strftime_now" in source:
                    hf_vars["date_string"] = FIXED_NOW.strftime("%d %b %Y")
                jobs.append({"source": source, "variables": hf_vars})

    summary = {}
    if args.hf_jinja:
        hf = hf_jinja_render(args.hf_jinja, jobs)
        for case, other in zip(results, hf):
            if "text" in case:
                verdict = "agree" if other.get("text") == case["text"] else ("error" if "error" in other else "differs")
            else:
                verdict = "agree" if "error" in other else "differs"
            case["hf_jinja"] = verdict
            summary.setdefault(case["template"], {}).setdefault(verdict, 0)
            summary[case["template"]][verdict] += 1
        for name, counts in summary.items():
            print(f"{name:24} {counts}")

    out = {
        "generator": "tools/templates/make_template_goldens.py",
        "jinja2": jinja2.__version__,
        "fixed_now": FIXED_NOW.isoformat(),
        "templates": {name: {"path": os.path.relpath(path, ROOT), "tokens": tokens} for name, path, tokens in cases()},
        "conversations": CONVERSATIONS,
        "cases": results,
        "snippet_variables": SNIPPET_VARS,
        "snippets": snippet_goldens(env),
    }
    tmp = os.path.join(DATA, "goldens.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(DATA, "goldens.json"))
    n_err = sum(1 for c in results if "error" in c)
    print(f"{len(results)} cases ({n_err} errors) -> tests/data/templates/goldens.json", file=sys.stderr)


if __name__ == "__main__":
    main()
