"""A renderer for the part of Go's text/template (and Helm's functions) that
deploy/helm/tandem uses, so the tests can see the manifests the chart makes
without helm.

It is not Helm. It knows: text, {{- -}} trimming, comments, pipelines with
`|`, variables ($, $x, $x := ...), fields (.a.b, $x.a), parentheses, string
/ number / bool literals, if / else if / else, range (one or two variables,
lists and maps), with, define, and the functions listed in FUNCS. Anything
else raises TemplateError, so a template that starts using more than this
makes the test fail instead of rendering wrongly. Unlike Helm, a field that
is missing from the values is an error here (helm_test wants every
reference to exist).
"""

import decimal
import json
import re

import yaml


class TemplateError(Exception):
    pass


# ---------------------------------------------------------------- lexing

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def split(src):
    """Text and action pieces, with the trim markers applied to the text."""
    pieces = []
    pos = 0
    for m in ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trim_next":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            pieces.append(("action", body))
        if m.group(3):
            pieces.append(("trim_next", None))
        pos = m.end()
    text = src[pos:]
    if pieces and pieces[-1][0] == "trim_next":
        pieces.pop()
        text = text.lstrip()
    pieces.append(("text", text))
    return [p for p in pieces if not (p[0] == "text" and p[1] == "")]


TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<decl>:=)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()|,])
""", re.X)


def tokens(s):
    out = []
    pos = 0
    while pos < len(s):
        m = TOKEN.match(s, pos)
        if not m:
            raise TemplateError("cannot read %r" % s[pos:])
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
    return out


# ---------------------------------------------------------------- parsing

def parse_pipeline(toks):
    """[decl vars] cmd | cmd ...  ->  (vars, [cmd]); a cmd is a list of operands."""
    variables = []
    if any(t == ("decl", ":=") for t in toks):
        i = toks.index(("decl", ":="))
        variables = [t[1] for t in toks[:i] if t[0] == "var"]
        if len(variables) != len([t for t in toks[:i] if t[1] != ","]):
            raise TemplateError("bad declaration %r" % toks)
        toks = toks[i + 1:]
    cmds, cur, depth, i = [], [], 0, 0
    while i < len(toks):
        kind, val = toks[i]
        if val == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(toks):
                    raise TemplateError("unbalanced (")
                depth += {"(": 1, ")": -1}.get(toks[j][1], 0)
                j += 1
            cur.append(("pipe", parse_pipeline(toks[i + 1:j - 1])))
            i = j
            continue
        if val == "|":
            cmds.append(cur)
            cur = []
        else:
            cur.append((kind, val))
        i += 1
    cmds.append(cur)
    if any(not c for c in cmds):
        raise TemplateError("empty command in %r" % toks)
    return variables, cmds


BLOCKS = ("if", "range", "with", "define")


def parse(pieces, i=0, stop=()):
    """Nodes up to one of the words in `stop` (end, else); returns
    (nodes, index of that action, its text)."""
    nodes = []
    while i < len(pieces):
        kind, val = pieces[i]
        if kind == "text":
            nodes.append(("text", val))
            i += 1
            continue
        word = val.split(None, 1)[0] if val else ""
        rest = val[len(word):].strip()
        if word in ("end", "else"):
            if word not in stop:
                raise TemplateError("unexpected {{ %s }}" % val)
            return nodes, i, val
        if word == "define":
            body, i, _ = parse(pieces, i + 1, ("end",))
            nodes.append(("define", json.loads(rest), body))
            i += 1
        elif word in BLOCKS:
            node, i = parse_block(word, rest, pieces, i + 1)
            nodes.append(node)
        elif word in ("template", "block", "break", "continue"):
            raise TemplateError("unsupported action %r" % val)
        else:
            nodes.append(("action", parse_pipeline(tokens(val))))
            i += 1
    if stop:
        raise TemplateError("missing {{ end }}")
    return nodes, i, None


def parse_block(word, rest, pieces, i):
    """if / range / with from its body on; returns (node, index after its end).
    `else if X` is an if inside the else branch that shares the end."""
    body, i, end = parse(pieces, i, ("end", "else"))
    alt = []
    if end.startswith("else if "):
        sub, i = parse_block("if", end[len("else if "):], pieces, i + 1)
        alt = [sub]
    elif end == "else":
        alt, i, _ = parse(pieces, i + 1, ("end",))
        i += 1
    elif end == "end":
        i += 1
    else:
        raise TemplateError("unsupported %r" % end)
    return (word, parse_pipeline(tokens(rest)), body, alt), i


# ---------------------------------------------------------------- values

def truthy(v):
    return v not in (None, False, 0, "", [], {}) and v == v


def go_float(f):
    """Go's %v of a float64 (%g, shortest digits): 8192 but 1e+06."""
    if f == 0:
        return "0"
    sign, digits, exp = decimal.Decimal(repr(f)).normalize().as_tuple()
    d = "".join(map(str, digits))
    e10 = len(d) + exp - 1
    s = "-" if sign else ""
    if e10 < -4 or e10 >= 6:
        return "%s%s%se%s%02d" % (s, d[0], "." + d[1:] if len(d) > 1 else "",
                                  "-" if e10 < 0 else "+", abs(e10))
    return s + format(decimal.Decimal(repr(abs(f))).normalize(), "f")


def numbers_as_go(v):
    """Values as Helm holds them: yaml numbers become float64."""
    if isinstance(v, dict):
        return {k: numbers_as_go(x) for k, x in v.items()}
    if isinstance(v, list):
        return [numbers_as_go(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def show(v):
    """A value as Go's fmt prints it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (dict, list)):
        raise TemplateError("printing a %s: use toYaml" % type(v).__name__)
    return str(v)


def whole_numbers(v):
    """Whole float64s as yaml.Marshal writes them: 4, not 4.0."""
    if isinstance(v, dict):
        return {k: whole_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [whole_numbers(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def to_yaml(v):
    if v in ({}, []):
        return "{}" if v == {} else "[]"
    return yaml.safe_dump(whole_numbers(v), default_flow_style=False, sort_keys=True).rstrip("\n")


def indent(n, s):
    return "\n".join(" " * n + line for line in str(s).split("\n"))


def go_printf(fmt, *args):
    args = list(args)

    def one(m):
        if m.group() == "%%":
            return "%"
        a = args.pop(0)
        return show(a) if m.group() in ("%s", "%v", "%d") else json.dumps(show(a))
    return re.sub(r"%[sdvq%]", one, fmt)


def required(msg, v):
    if not truthy(v):
        raise TemplateError("required: " + msg)
    return v


def index(coll, *keys):
    for k in keys:
        if isinstance(coll, dict):
            if k not in coll:
                raise TemplateError("index: no key %r" % k)
        coll = coll[k]
    return coll


FUNCS = {
    "default": lambda d, v=None: v if truthy(v) else d,
    "quote": lambda *v: " ".join(json.dumps(show(x)) for x in v),
    "toYaml": to_yaml,
    "nindent": lambda n, s: "\n" + indent(n, s),
    "indent": indent,
    "trunc": lambda n, s: s[:n],
    "trimSuffix": lambda suf, s: s[:-len(suf)] if suf and s.endswith(suf) else s,
    "contains": lambda sub, s: sub in s,
    "printf": go_printf,
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "not": lambda v: not truthy(v),
    "and": None,  # short-circuit, in call()
    "or": None,
    "list": lambda *a: list(a),
    "dict": lambda *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
    "index": index,
    "required": required,
    "join": lambda sep, l: sep.join(show(x) for x in l),
    "toString": show,
    "int": int,
    "include": None,  # needs the renderer
}


# ---------------------------------------------------------------- execution

class Renderer:
    def __init__(self, values, chart, release):
        self.root = {"Values": numbers_as_go(values), "Chart": chart, "Release": release,
                     "Capabilities": {}, "Template": {}}
        self.defines = {}

    def load(self, name, src):
        nodes, i, _ = parse(split(src))
        self.collect(nodes)
        return nodes

    def collect(self, nodes):
        for n in nodes:
            if n[0] == "define":
                self.defines[n[1]] = n[2]

    def render(self, nodes):
        return self.run(nodes, self.root, {"$": self.root})

    def run(self, nodes, dot, scope):
        out = []
        for n in nodes:
            kind = n[0]
            if kind == "text":
                out.append(n[1])
            elif kind == "define":
                pass
            elif kind == "action":
                variables, cmds = n[1]
                v = self.pipe(n[1], dot, scope)
                if not variables:
                    out.append(show(v))
            elif kind in ("if", "with"):
                inner = dict(scope)
                v = self.pipe(n[1], dot, inner)
                if truthy(v):
                    out.append(self.run(n[2], v if kind == "with" else dot, inner))
                else:
                    out.append(self.run(n[3], dot, dict(scope)))
            elif kind == "range":
                variables, cmds = n[1]
                coll = self.pipe(([], cmds), dot, scope)
                items = (sorted(coll.items()) if isinstance(coll, dict)
                         else list(enumerate(coll or [])))
                if not items:
                    out.append(self.run(n[3], dot, dict(scope)))
                for k, v in items:
                    inner = dict(scope)
                    if len(variables) == 1:
                        inner[variables[0]] = v
                    elif len(variables) == 2:
                        inner[variables[0]], inner[variables[1]] = k, v
                    out.append(self.run(n[2], v, inner))
            else:
                raise TemplateError("node %r" % kind)
        return "".join(out)

    def pipe(self, pipeline, dot, scope):
        variables, cmds = pipeline
        v, have = None, False
        for cmd in cmds:
            v = self.call(cmd, dot, scope, v, have)
            have = True
        for name in variables:
            scope[name] = v
        return v

    def call(self, cmd, dot, scope, piped, have):
        head = cmd[0]
        if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
            name = head[1]
            if name not in FUNCS:
                raise TemplateError("unknown function %r" % name)
            if name in ("and", "or"):
                v = None
                for op in cmd[1:] + ([("value", piped)] if have else []):
                    v = self.operand(op, dot, scope)
                    if truthy(v) != (name == "and"):
                        return v
                return v
            args = [self.operand(op, dot, scope) for op in cmd[1:]]
            if have:
                args.append(piped)
            if name == "include":
                if args[0] not in self.defines:
                    raise TemplateError("no template %r" % args[0])
                return self.run(self.defines[args[0]], args[1], {"$": args[1]})
            try:
                return FUNCS[name](*args)
            except TemplateError:
                raise
            except Exception as e:  # a wrong argument count or type
                raise TemplateError("%s%r: %s" % (name, tuple(args), e))
        if len(cmd) != 1 or have:
            raise TemplateError("not a function: %r" % (cmd,))
        return self.operand(head, dot, scope)

    def operand(self, op, dot, scope):
        kind, val = op
        if kind == "value":
            return val
        if kind == "str":
            return json.loads(val)
        if kind == "raw":
            return val[1:-1]
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[val]
        if kind == "pipe":
            return self.pipe(val, dot, dict(scope))
        if kind == "field":
            return fields(dot, val)
        if kind == "var":
            name, _, path = val.partition(".")
            if name not in scope:
                raise TemplateError("undefined variable %s" % name)
            return fields(scope[name], "." + path if path else ".")
        raise TemplateError("operand %r" % (op,))


def fields(v, path):
    if path == ".":
        return v
    for f in path[1:].split("."):
        if not isinstance(v, dict) or f not in v:
            raise TemplateError("no field %s (in %s)" % (f, path))
        v = v[f]
    return v


def set_path(values, dotted, value):
    """helm --set a.b.c=value on a copy of values (the key must exist)."""
    *parents, last = dotted.split(".")
    d = values
    for p in parents:
        d = d[p]
    if last not in d:
        raise KeyError(dotted)
    d[last] = value
