"The `cohort-inrs` command: help, cohort listing, montages and clear errors on bad input."
import subprocess, sys
from pathlib import Path
from cohort_inrs.cli import main

def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert 'cohorts' in capsys.readouterr().out

def test_cohorts_lists_embedded_with_sizes(capsys):
    assert main(['cohorts']) == 0
    out = capsys.readouterr().out
    for name, n in [('mni152', '78'), ('mni152cor', '91'), ('lfw', '100'), ('digits', '1797')]:
        line = next(l for l in out.splitlines() if l.startswith(name))
        assert n in line.split(), line

def test_cohorts_show_writes_montage(tmp_path):
    out = tmp_path/'m.png'
    assert main(['cohorts', 'show', 'lfw@16', '--out', str(out), '--profile', 'smoke']) == 0
    assert out.exists() and out.read_bytes()[:4] == b'\x89PNG'

def test_bad_cohort_gives_clear_error(tmp_path, capsys):
    assert main(['cohorts', 'show', 'celeba', '--out', str(tmp_path/'x.png')]) == 2
    err = capsys.readouterr().err
    assert 'celeba' in err and 'folder:' in err
    assert not (tmp_path/'x.png').exists()

def test_bad_override_names_the_field(tmp_path, capsys):
    assert main(['cohorts', 'show', 'lfw', '--set', 'data.resolutoin=8', '--out', str(tmp_path/'x.png')]) == 2
    assert 'resolutoin' in capsys.readouterr().err

def test_console_script_runs():
    exe = Path(sys.executable).parent/'cohort-inrs'
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'cohorts' in r.stdout

def test_bench_quick_prints_ratios(capsys):
    assert main(['bench', '--quick', '--only', 'sweep', 'sae']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [l.split()[0] for l in lines] == ['sweep', 'sweep', 'sae'] and all(' ratio ' in l for l in lines)

def test_readme_commands_exist():
    "Every `cohort-inrs SUBCOMMAND` and every figure/test file the README names exists."
    import re
    from cohort_inrs.cli import build_parser
    root = Path(__file__).resolve().parent.parent
    readme = (root/'README.md').read_text()
    sub = next(a for a in build_parser()._actions if a.dest == 'command').choices
    used = set(re.findall(r'cohort-inrs ([a-z][a-z-]+)', readme)) - {'regenerate'} | {'regenerate'}
    assert used <= set(sub), used - set(sub)
    for path in re.findall(r'\]\(((?:figures|nbs)/[^)#]+)\)', readme):
        assert (root/path).exists(), path

def test_readme_command_lines_parse():
    "Every `cohort-inrs ...` line in the README's code blocks (and `-m cohort_inrs ...` under torchrun) parses with the real parser."
    import re, shlex
    from cohort_inrs.cli import build_parser
    readme = (Path(__file__).resolve().parent.parent/'README.md').read_text()
    blocks = re.findall(r'```bash\n(.*?)```', readme, re.S)
    lines = [l.split('  #')[0].strip() for b in blocks for l in b.replace('\\\n', ' ').splitlines()]
    cmds = [shlex.split(l)[1:] for l in lines if l.startswith('cohort-inrs ')]
    cmds += [shlex.split(l.split('-m cohort_inrs', 1)[1]) for l in lines if '-m cohort_inrs ' in l]
    assert len(cmds) >= 10 and any(c[0] == 'train' for c in cmds), cmds
    p = build_parser()
    for c in cmds:
        if '--help' in c: continue  # prints help and exits 0
        try: p.parse_args(c)
        except SystemExit as e: raise AssertionError(f"README command does not parse: cohort-inrs {' '.join(c)}") from e

def test_readme_python_example_runs():
    "The README's Python example runs as written, at the smoke profile's size (the cpu profile and cohort swapped in by name)."
    import re
    readme = (Path(__file__).resolve().parent.parent/'README.md').read_text()
    code = re.search(r'### In Python\n\n```python\n(.*?)```', readme, re.S).group(1)
    small = code.replace("get_config('cpu', train=dict(steps=500))", "get_config('smoke')").replace("'mni152@48'", "'digits'")
    assert small.count("'digits'") == 3 and "get_config('smoke')" in small, small
    env = {}; exec(compile(small, 'README.md', 'exec'), env)
    fit, sweep = env['fit'], env['sweep']
    assert fit['mse'].shape[1] == 1 and float(fit['mse'][-1, 0]) < float(fit['mse'][0, 0])  # the new image's fit learned
    assert sweep['psnr'].shape[0] == len(sweep['configs'])

def test_train_names_each_step(capsys):
    "`cohort-inrs train` says what it is doing before each step, with the time since the start; --quiet keeps only the results."
    args = ['train', '--profile', 'smoke', '--cohorts', 'digits', '--backbones', 'siren', '--sweep']
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(l.startswith('[0:00:') for l in out), out
    steps = [l.split('] ', 1)[1] for l in out]
    assert steps[:3] == ['smoke profile, 1 process', 'siren digits: cohort INR ...', steps[2]] and steps[2].startswith('siren digits: cohort INR ')
    assert 'siren digits: freeze sweep ...' in steps and steps[-1].startswith('siren digits freeze sweep: done')
    assert main(args + ['--quiet']) == 0
    quiet = [l.split('] ', 1)[1] for l in capsys.readouterr().out.splitlines()]
    assert not any(l.endswith(' ...') for l in quiet) and len(quiet) == 3, quiet

def test_setup_scripts():
    "The fresh-machine scripts parse, and CI runs the same setup and test command as the README."
    root = Path(__file__).resolve().parent.parent
    for f in ('tools/setup', 'tools/regenerate', 'tools/test', '.ci/run'):
        p = root/f; assert p.stat().st_mode & 0o111, f"{f} is not executable"
        r = subprocess.run(['bash', '-n', str(p)], capture_output=True, text=True); assert r.returncode == 0, (f, r.stderr)
    ci = (root/'.ci'/'run').read_text()
    assert 'tools/setup' in ci and ci.rstrip().endswith('tools/test') and 'nbdev-clean' in ci and 'nbdev-export' in ci
    assert 'python -m pytest -q' in (root/'tools'/'test').read_text() and 'cohort-inrs regenerate "$@"' in (root/'tools'/'regenerate').read_text()
    assert 'pip install -q -e ".[dev]"' in (root/'tools'/'setup').read_text()
