"""The compiled core's stub (_core.pyi) says what the built module does: the
same classes and functions, the same parameters in the same order with the
same defaults, the same properties, and for ``Session``/``sample`` the same
keyword options as the C++ reads. mypy checks the package's calls against
the stub, so a stub that drifted would let a wrong call through."""

import ast
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from salient_pipes import _native
from salient_pipes._native import _core

NATIVE = Path(_native.__file__).parent
STUB = ast.parse((NATIVE / "_core.pyi").read_text())
MISSING = object()  # no default
ANY_DEFAULT = object()  # the stub's `...`

Param = Tuple[str, Any]


def _default(node: Optional[ast.expr]) -> Any:
    if node is None:
        return MISSING
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return ANY_DEFAULT
    return ast.literal_eval(node)


def _stub_params(fn: ast.FunctionDef) -> Tuple[List[Param], Optional[str]]:
    """A stub function's parameters (self left out), and the options class
    its ``**options: Unpack[...]`` names, if it has one."""
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    params = [(p.arg, _default(d)) for p, d in zip(pos, defaults) if p.arg != "self"]
    assert not a.kwonlyargs
    options = None
    if a.kwarg is not None:
        ann = a.kwarg.annotation
        assert isinstance(ann, ast.Subscript) and isinstance(ann.slice, ast.Name)
        options = ann.slice.id
    return params, options


def _options(name: str) -> Dict[str, Any]:
    """The keys of an options class of the stub (its bases' too), each with the
    default its comment gives."""
    lines = (NATIVE / "_core.pyi").read_text().splitlines()
    cls = _stub_defs()[name]
    assert isinstance(cls, ast.ClassDef)
    out: Dict[str, Any] = {}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id != "TypedDict":
            out.update(_options(base.id))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment = lines[node.lineno - 1].split("#", 1)[1].strip()
            value = comment.split(" (")[0]
            out[node.target.id] = ANY_DEFAULT if value == "..." else ast.literal_eval(value)
    return out


def _runtime_params(obj: Any) -> Tuple[List[Param], bool]:
    """Parameters from pybind11's signature line, and whether it takes **kwargs."""
    line = obj.__doc__.strip().splitlines()[0]
    sig = ast.parse(f"def {line}: pass").body[0]
    assert isinstance(sig, ast.FunctionDef)
    a = sig.args
    defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
    params = [(p.arg, _default(d)) for p, d in zip(a.args, defaults) if p.arg != "self"]
    return params, a.kwarg is not None


def _same(stub: List[Param], runtime: List[Param]) -> bool:
    if [n for n, _ in stub] != [n for n, _ in runtime]:
        return False
    for (_, s), (_, r) in zip(stub, runtime):
        if s is ANY_DEFAULT:
            if r is MISSING:
                return False
        elif s != r and not (s is None and r is None):
            return False
    return True


def _stub_defs() -> Dict[str, ast.AST]:
    return {n.name: n for n in STUB.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}


def _members(cls: ast.AST) -> Dict[str, ast.FunctionDef]:
    assert isinstance(cls, ast.ClassDef)
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def _is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


# ------------------------------------------------------------ the C++ side
def _keywords_read_by_the_core() -> Tuple[Dict[str, Any], set]:
    """Every keyword ``make_job`` takes, with its C++ fallback (None where it
    has none), and the ones only a Session takes."""
    src = (NATIVE / "bind_job.cpp").read_text()
    found: Dict[str, Any] = {}
    for m in re.finditer(r'take(?:<[\w:]+>)?\("(\w+)"(?:, ([^)]+))?\)'
                         r'|per_edge\(kw, "(\w+)"', src):
        name = m.group(1) or m.group(3)
        fallback = m.group(2)
        if fallback is None:
            found[name] = None
        elif fallback in ("true", "false"):
            found[name] = fallback == "true"
        elif re.fullmatch(r'-?\d+|"[^"]*"', fallback):
            found[name] = ast.literal_eval(fallback)
        else:
            found[name] = ANY_DEFAULT  # a named constant
    session_part = src[src.index("if (session) {"):src.index("kw.finish(")]
    only_session = set(re.findall(r'take(?:<[\w:]+>)?\("(\w+)"', session_part))
    return found, only_session


def test_the_stub_names_every_class_and_function_of_the_module_and_no_other():
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert set(_stub_defs()) - {"SampleOptions", "SessionOptions"} == public


@pytest.mark.parametrize("name", sorted(n for n, d in _stub_defs().items()
                                        if isinstance(d, ast.ClassDef) and hasattr(_core, n)))
def test_each_class_has_the_modules_bases_methods_and_properties(name):
    stub = _stub_defs()[name]
    assert isinstance(stub, ast.ClassDef)
    cls = getattr(_core, name)
    bases = [b.id for b in stub.bases if isinstance(b, ast.Name)]
    assert bases == [b.__name__ for b in cls.__bases__
                     if b.__name__ not in ("pybind11_object", "object")], name
    members = _members(stub)
    runtime = {n: v for n, v in vars(cls).items() if not n.startswith("_")}
    assert {n for n, f in members.items() if _is_property(f)} == \
        {n for n, v in runtime.items() if isinstance(v, property)}
    assert {n for n, f in members.items() if not _is_property(f) and n != "__init__"} == \
        {n for n, v in runtime.items() if not isinstance(v, property)}
    for method, fn in members.items():
        if _is_property(fn) or name == "FeatureFileError":
            continue
        positional, options = _stub_params(fn)
        params, kwargs = _runtime_params(getattr(cls, method))
        assert _same(positional, params), (name, method, positional, params)
        assert (options is not None) == kwargs, (name, method)


@pytest.mark.parametrize("name", sorted(n for n, d in _stub_defs().items()
                                        if isinstance(d, ast.FunctionDef)))
def test_each_function_has_the_modules_parameters_and_defaults(name):
    fn = _stub_defs()[name]
    assert isinstance(fn, ast.FunctionDef)
    positional, options = _stub_params(fn)
    params, kwargs = _runtime_params(getattr(_core, name))
    assert _same(positional, params), (positional, params)
    assert (options is not None) == kwargs


def test_session_and_sample_keywords_are_the_ones_the_core_reads_with_its_defaults():
    read, only_session = _keywords_read_by_the_core()
    assert {"node_wise", "x", "weights", "times", "num_threads"} <= set(read)  # the scan works
    assert only_session == {"num_threads", "ordered", "fail_at_position",
                            "stall_at_position"}
    session = _members(_stub_defs()["Session"])["__init__"]
    sample = _stub_defs()["sample"]
    assert isinstance(sample, ast.FunctionDef)
    assert _stub_params(session)[1] == "SessionOptions"
    assert _stub_params(sample)[1] == "SampleOptions"
    assert _options("SessionOptions") == read
    assert _options("SampleOptions") == {k: v for k, v in read.items() if k not in only_session}


def test_the_module_accepts_each_keyword_of_the_stub_and_refuses_others():
    rowptr = np.array([0, 1, 2], dtype=np.int64)
    graph = _core.CSRGraph(rowptr, np.array([1, 0], dtype=np.int64))
    for key in _options("SessionOptions"):
        _core.Session(graph, [1], **{key: None}).close()  # None: the core's default
    with pytest.raises(TypeError, match="unexpected keyword argument 'fanout'"):
        _core.Session(graph, [1], fanout=None)
    seeds = np.array([0], dtype=np.int64)
    for key in _options("SampleOptions"):
        assert _core.sample(graph, seeds, [1], **{key: None})[0][0].tolist() == [0, 1]
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_threads'"):
        _core.sample(graph, seeds, [1], num_threads=2)
