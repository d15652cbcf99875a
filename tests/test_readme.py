"""The READMEs' commands run as written: each shell command parses, names files that exist, passes only flags its tool
accepts (asked of the tool's own ``--help``), uses only variables the same block defines, runs with the venv's
interpreter, and names no checkpoint whose epoch depends on the run."""
import functools
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

READMES = ('README.md', 'configs/dynamixer/README.md')
INTERPRETER = '.venv/bin/python'
# Inline code spans that are commands: they start like one.
INLINE_COMMAND = re.compile(r'`((?:[A-Z_]+=\S+ )*(?:\.venv/bin/python|python|bash|tools/\S+\.sh|mim) [^`]+)`')
# Arguments that stand for the user's own files, written in capitals (CONFIG, CKPT, IMAGE, WORK_DIR, ...).
PLACEHOLDER = re.compile(r'^[A-Z][A-Z_0-9]*$')
# Checkpoint names that hold an epoch or iteration chosen by the run (the best epoch), not by the config.
RUN_DEPENDENT_CHECKPOINT = re.compile(r'best_\w+_(?:epoch|iter)_\d+\.pth')


def shell_commands(readme: str):
    """``(readme, block number, lines)`` of each shell block, and of each inline command (a block of its own)."""
    text = (REPO / readme).read_text()
    blocks = re.findall(r'^```shell\n(.*?)^```', text, flags=re.S | re.M)
    inline = [match for match in INLINE_COMMAND.findall(re.sub(r'^```.*?^```', '', text, flags=re.S | re.M))]
    return [(readme, i, block) for i, block in enumerate(blocks + inline)]


BLOCKS = [block for readme in READMES for block in shell_commands(readme)]


def commands(block: str):
    """The simple commands of a shell block: continuations joined, comments dropped, split at line ends, ``&&``,
    ``;`` and ``|``."""
    for line in block.replace('\\\n', ' ').splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
        lexer.whitespace_split = True
        lexer.commenters = '#'
        command = []
        for token in lexer:
            if set(token) <= set(';&|'):
                if command:
                    yield command
                command = []
            else:
                command.append(token)
        if command:
            yield command


@functools.lru_cache(maxsize=None)
def tool_help(script: str) -> str:
    """What ``script --help`` prints (it must exit 0)."""
    run = subprocess.run([sys.executable, str(REPO / script), '--help'], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f'{script} --help failed:\n{run.stderr[-2000:]}'
    return run.stdout


def test_readmes_have_commands():
    assert len(BLOCKS) > 20  # the extraction finds them (a changed fence or prefix would silently find none)


@pytest.mark.parametrize('readme,number,block', BLOCKS, ids=[f'{r}#{n}' for r, n, _ in BLOCKS])
def test_command_runs_as_written(readme, number, block):
    defined = set()
    for words in commands(block):
        assignments = []
        while words and re.match(r'^[A-Za-z_]\w*=', words[0]):
            assignments.append(words.pop(0).split('=', 1)[0])
        if words[:1] == ['for'] and len(words) > 1:
            defined.add(words[1])
        for word in words:
            for name in re.findall(r'\$\{?([A-Za-z_]\w*)', word):
                assert name in defined, f'{readme}: ${name} is used before this block defines it: {block!r}'
        defined.update(assignments)
        if not words or words[0] in ('for', 'do', 'done', 'export', 'cd', 'source'):
            continue
        program, args = words[0], words[1:]
        assert program != 'python', f'{readme}: run the venv\'s interpreter ({INTERPRETER}), not "python": {block!r}'
        for word in words:
            assert not RUN_DEPENDENT_CHECKPOINT.search(word), (
                f'{readme}: {word} names the best checkpoint of one particular run; read it from the run instead')
            if re.match(r'^(tools|configs)/\S+\.(py|sh)$', word):
                assert (REPO / word).is_file(), f'{readme}: {word} does not exist ({block!r})'
        if program == INTERPRETER and args and args[0].endswith('.py'):
            script, flags = args[0], [a.split('=', 1)[0] for a in args[1:] if a.startswith('--')]
            help_text = tool_help(script)
            for flag in flags:
                assert re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])', help_text), (
                    f'{readme}: {script} has no flag {flag} (its --help lists none): {block!r}')
        elif program == INTERPRETER and args[:2] == ['-m', 'pytest']:
            for target in args[2:]:
                if not target.startswith('-') and target.startswith('tests/'):
                    assert (REPO / target.split('::')[0]).is_file(), f'{readme}: {target} does not exist'


@pytest.mark.parametrize('readme', READMES)
def test_python_snippets_compile(readme):
    text = (REPO / readme).read_text()
    for snippet in re.findall(r'^```python\n(.*?)^```', text, flags=re.S | re.M):
        compile(snippet, readme, 'exec')


def test_layout_names_every_module_and_nothing_that_is_gone():
    """The README's Layout section matches the tree: each module and package of mmdynamixer/ (and each file of
    models/ and integrations/) is named, and each file name it gives exists."""
    readme = (REPO / 'README.md').read_text()
    layout = re.search(r'^## Layout\n+```\n(.*?)^```', readme, flags=re.S | re.M).group(1)
    package = REPO / 'mmdynamixer'
    entries = [p.name + ('/' if p.is_dir() else '') for p in package.iterdir()
               if p.name != '__init__.py' and not p.name.startswith(('.', '__pycache__'))]
    entries += [p.name for folder in ('models', 'integrations') for p in (package / folder).glob('*.py')
                if p.name != '__init__.py']
    assert [entry for entry in entries if not re.search(rf'(?<![\w/]){re.escape(entry)}', layout)] == []
    named = set(re.findall(r'[\w/]+\.(?:py|sh)\b', layout))
    everything = {str(p.relative_to(REPO)) for p in REPO.rglob('*') if '.venv' not in p.parts}
    missing = [name for name in named if not any(path == name or path.endswith('/' + name) for path in everything)]
    assert missing == []
