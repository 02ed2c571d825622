"""The package's import graph: no module imports one that imports it back (directly or through others),
counting imports at module level and inside functions, and no module imports another's `_private` name."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent/'cohort_inrs'
MODULES = sorted(p.stem for p in PKG.glob('*.py'))
# Private names still imported across modules (none left; an entry is `(importer, module, name)`).
KNOWN_PRIVATE = set()

def _target(mod:str, node:ast.ImportFrom|ast.Import):
    "The cohort_inrs modules one import statement in `mod` refers to, with the names it takes: [(module, name or None)]."
    out = []
    if isinstance(node, ast.Import):
        for a in node.names:
            parts = a.name.split('.')
            if parts[0] == 'cohort_inrs': out.append((parts[1] if len(parts) > 1 else '__init__', None))
        return out
    if node.level > 1: raise AssertionError(f"{mod}: relative import beyond the package: {ast.unparse(node)}")
    if node.level == 1: base = node.module
    elif node.module and node.module.split('.')[0] == 'cohort_inrs': base = node.module.split('.', 1)[1] if '.' in node.module else None
    else: return out
    for a in node.names:
        if base is None: out.append((a.name, None) if a.name in MODULES else ('__init__', a.name))  # `from cohort_inrs import x`
        else: out.append((base.split('.')[0], a.name))
    return out

def import_graph():
    "module -> {module: [line numbers]} of every import of another cohort_inrs module, at any depth of the code."
    g = {}
    for m in MODULES:
        edges = {}
        for node in ast.walk(ast.parse((PKG/f'{m}.py').read_text(), f'{m}.py')):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t, _ in _target(m, node):
                    if t != m: edges.setdefault(t, []).append(node.lineno)
        g[m] = edges
    return g

def cycles(g:dict):
    "Every elementary cycle's smallest rotation, found by a depth-first search from each module."
    found = set()
    def walk(start, node, path):
        for nxt in g.get(node, {}):
            if nxt == start: i = path.index(min(path)); found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path and nxt > start: walk(start, nxt, path + [nxt])  # each cycle once, from its smallest module
    for m in sorted(g): walk(m, m, [m])
    return sorted(found)

def test_every_module_is_parsed():
    assert {'cli', 'atlas', 'pipeline', 'launch', '__main__'} <= set(MODULES)
    g = import_graph()
    assert 'cli' in g['__main__'] and 'launch' in g['cli'] and 'sae' in g['atlas']  # module level and function level alike

def test_no_import_cycles():
    g = import_graph()
    bad = cycles(g)
    assert not bad, 'import cycles: ' + '; '.join(' -> '.join(c + (c[0],)) + ' (' + ', '.join(
        f"{a}.py:{g[a][b][0]}" for a, b in zip(c, c[1:] + (c[0],))) + ')' for c in bad)

def test_cycle_finder_finds_cycles():
    assert cycles({'a': {'b': [1]}, 'b': {'c': [1]}, 'c': {'a': [1]}, 'd': {'a': [1]}}) == [('a', 'b', 'c')]
    assert cycles({'a': {'b': [1]}, 'b': {}}) == []

def test_cli_is_the_top():
    "Nothing imports the command line but `python -m cohort_inrs`."
    g = import_graph()
    assert [m for m in g if 'cli' in g[m]] == ['__main__']

def test_no_private_names_across_modules():
    bad = []
    for m in MODULES:
        for node in ast.walk(ast.parse((PKG/f'{m}.py').read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [(m, t, n) for t, n in _target(m, node) if n and n.startswith('_') and t != m and (m, t, n) not in KNOWN_PRIVATE]
    assert not bad, f"private names imported across modules (make them public, with a docstring): {bad}"
