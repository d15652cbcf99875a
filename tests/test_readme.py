"""The docs work as written: README.md, every page of docs/ and configs/dynamixer/README.md. Each relative link and
image resolves (a heading anchor included); each shell command parses, names files that exist, passes only flags
its tool accepts (asked of the tool's own ``--help``), uses only variables its block defines, runs with the venv's
interpreter and names no checkpoint whose epoch depends on the run; each Python snippet that needs no data runs
(configs are loaded with mmengine and their model built; tests/docs_runner.py runs them); the Layout section
matches the tree; the tools page names every tool; the model zoo matches metafile.yml and the configs present."""
import functools
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

DOCS = ('README.md', 'configs/dynamixer/README.md',
        *sorted(str(page.relative_to(REPO)) for page in (REPO / 'docs').glob('*.md')))
INTERPRETER = '.venv/bin/python'
FENCE = re.compile(r'^```.*?^```', flags=re.S | re.M)
# Inline code spans that are commands: they start like one.
INLINE_COMMAND = re.compile(r'`((?:[A-Z_]+=\S+ )*(?:\.venv/bin/python|python|bash|tools/\S+\.sh|mim) [^`]+)`')
# Checkpoint names that hold an epoch or iteration chosen by the run (the best epoch), not by the config.
RUN_DEPENDENT_CHECKPOINT = re.compile(r'best_\w+_(?:epoch|iter)_\d+\.pth')
# A Python block's marker, the HTML comment on the line above it: how the block is run.
PYTHON_BLOCK = re.compile(r'(?:^<!-- (not run: .+?|config: model) -->\n)?^```python\n(.*?)^```', flags=re.S | re.M)


def read(doc: str) -> str:
    return (REPO / doc).read_text()


def shell_commands(doc: str):
    """``(doc, block number, lines)`` of each shell block, and of each inline command (a block of its own)."""
    text = read(doc)
    blocks = re.findall(r'^```shell\n(.*?)^```', text, flags=re.S | re.M)
    inline = INLINE_COMMAND.findall(FENCE.sub('', text))
    return [(doc, i, block) for i, block in enumerate(blocks + inline)]


def python_blocks(doc: str):
    """``(doc, block number, marker, code)`` of each Python block; marker is '' (run it), 'config: model' or
    'not run: <reason>'."""
    return [(doc, i, marker, code) for i, (marker, code) in enumerate(PYTHON_BLOCK.findall(read(doc)))]


def links(doc: str):
    """The relative targets of the doc's links and images, outside code."""
    text = re.sub(r'`[^`\n]*`', '', FENCE.sub('', read(doc)))
    targets = re.findall(r'!?\[[^\]]*\]\(([^)\s]+)\)', text) + re.findall(r'<img [^>]*src="([^"]+)"', text)
    return [t for t in targets if not re.match(r'^(https?|mailto):', t)]


def anchors(doc: str) -> set:
    """GitHub's anchors for the doc's headings: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    headings = re.findall(r'^#+ (.+)$', FENCE.sub('', read(doc)), flags=re.M)
    plain = (re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading).replace('`', '') for heading in headings)
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-') for heading in plain}


BLOCKS = [block for doc in DOCS for block in shell_commands(doc)]
SNIPPETS = [block for doc in DOCS for block in python_blocks(doc)]


def simple_commands(block: str):
    """``(assignments, words)`` of each simple command of a shell block: continuations joined, comments dropped,
    split at line ends, ``&&``, ``;`` and ``|``; leading ``NAME=value`` words are the assignments."""
    for line in block.replace('\\\n', ' ').splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
        lexer.whitespace_split = True
        lexer.commenters = '#'
        words = []
        for token in [*lexer, ';']:
            if set(token) <= set(';&|'):
                assignments = []
                while words and re.match(r'^[A-Za-z_]\w*=', words[0]):
                    assignments.append(words.pop(0).split('=', 1)[0])
                if words or assignments:
                    yield assignments, words
                words = []
            else:
                words.append(token)


def help_scripts() -> list:
    """The scripts the commands run with the venv's interpreter: their ``--help`` says which flags they take."""
    return sorted({words[1] for _, _, block in BLOCKS for _, words in simple_commands(block)
                   if words[:1] == [INTERPRETER] and len(words) > 1 and words[1].endswith('.py')})


@functools.lru_cache(maxsize=None)
def docs_run() -> dict:
    """What each tool's ``--help`` and each runnable snippet gave, by name (a script's path, ``doc#number``): one
    run of tests/docs_runner.py, which forks each from a process that imported the heavy libraries once."""
    tasks = [dict(kind='help', name=script, script=str(REPO / script)) for script in help_scripts()]
    tasks += [dict(kind='config' if marker == 'config: model' else 'script', name=f'{doc}#{number}', code=code)
              for doc, number, marker, code in SNIPPETS if not marker.startswith('not run: ')]
    run = subprocess.run([sys.executable, str(REPO / 'tests/docs_runner.py')], input=json.dumps(tasks), cwd=REPO,
                         capture_output=True, text=True, timeout=1200, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    return {task['name']: result for task, result in zip(tasks, results)}


def tool_help(script: str) -> str:
    """What ``script --help`` prints (it must exit 0)."""
    result = docs_run()[script]
    assert result['status'] == 0, f'{script} --help failed:\n{result["output"][-2000:]}'
    return result['output']


def test_docs_have_commands_snippets_and_links():
    # The extraction finds them (a changed fence, prefix or marker would silently find none).
    assert len(BLOCKS) > 40 and len(SNIPPETS) > 6 and sum(len(links(doc)) for doc in DOCS) > 40
    assert {marker for _, _, marker, _ in SNIPPETS} >= {'', 'config: model'}
    assert len(DOCS) >= 10


def test_readme_is_short():
    text = read('README.md')
    assert len(text.splitlines()) <= 250 and len(text.encode()) <= 15 * 1024


@pytest.mark.parametrize('doc', DOCS)
def test_links_and_images_resolve(doc):
    folder = (REPO / doc).parent
    broken = []
    for target in links(doc):
        path, _, anchor = target.partition('#')
        file = (folder / path).resolve() if path else REPO / doc
        if not file.exists():
            broken.append(f'{target} (no such file)')
        elif anchor and file.suffix == '.md' and anchor not in anchors(str(file.relative_to(REPO))):
            broken.append(f'{target} (no heading #{anchor})')
    assert broken == [], f'{doc}: broken links'


@pytest.mark.parametrize('doc,number,block', BLOCKS, ids=[f'{d}#{n}' for d, n, _ in BLOCKS])
def test_command_names_what_exists(doc, number, block):
    defined = set()
    for assignments, words in simple_commands(block):
        if words[:1] == ['for'] and len(words) > 1:
            defined.add(words[1])
        for word in words:
            for name in re.findall(r'\$\{?([A-Za-z_]\w*)', word):
                assert name in defined, f'{doc}: ${name} is used before this block defines it: {block!r}'
        defined.update(assignments)
        if not words or words[0] in ('for', 'do', 'done', 'export', 'cd', 'source'):
            continue
        program, args = words[0], words[1:]
        assert program != 'python', f'{doc}: run the venv\'s interpreter ({INTERPRETER}), not "python": {block!r}'
        for word in words:
            assert not RUN_DEPENDENT_CHECKPOINT.search(word), (
                f'{doc}: {word} names the best checkpoint of one particular run; read it from the run instead')
            if re.match(r'^(tools|configs)/\S+\.(py|sh)$', word):
                assert (REPO / word).is_file(), f'{doc}: {word} does not exist ({block!r})'
        if program == INTERPRETER and args and args[0].endswith('.py'):
            script, flags = args[0], [a.split('=', 1)[0] for a in args[1:] if a.startswith('--')]
            help_text = tool_help(script)
            for flag in flags:
                assert re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])', help_text), (
                    f'{doc}: {script} has no flag {flag} (its --help lists none): {block!r}')
        elif program == INTERPRETER and args[:2] == ['-m', 'pytest']:
            for target in args[2:]:
                if not target.startswith('-') and target.startswith('tests/'):
                    assert (REPO / target.split('::')[0]).is_file(), f'{doc}: {target} does not exist'


@pytest.mark.parametrize('doc,number,marker,code', SNIPPETS, ids=[f'{d}#{n}' for d, n, _, _ in SNIPPETS])
def test_python_snippet_runs(doc, number, marker, code):
    compile(code, doc, 'exec')
    if not marker.startswith('not run: '):
        result = docs_run()[f'{doc}#{number}']
        assert result['status'] == 0, f'{doc}: snippet {number} failed:\n{code}\n{result["output"][-3000:]}'


def test_layout_names_every_module_and_nothing_that_is_gone():
    """docs/development.md's Layout matches the tree: each module and package of mmdynamixer/ and each module of
    its packages is named, each folder of configs/ and tools/ too, and each file name it gives exists."""
    text = read('docs/development.md')
    layout = re.search(r'^## Layout\n+```\n(.*?)^```', text, flags=re.S | re.M).group(1)
    package = REPO / 'mmdynamixer'
    entries = [p.name + ('/' if p.is_dir() else '') for p in package.iterdir()
               if p.name != '__init__.py' and not p.name.startswith(('.', '__pycache__'))]
    entries += [p.name for p in package.glob('*/**/*.py') if p.name != '__init__.py']
    entries += [f'{root}/{p.name}/' for root in ('configs', 'tools') for p in (REPO / root).iterdir()
                if p.is_dir() and p.name != '__pycache__']
    assert [entry for entry in entries if not re.search(rf'(?<![\w/]){re.escape(entry)}', layout)] == []
    named = set(re.findall(r'[\w/]+\.(?:py|sh)\b', layout))
    everything = {str(p.relative_to(REPO)) for p in REPO.rglob('*') if not {'.venv', '.git'} & set(p.parts)}
    missing = [name for name in named if not any(path == name or path.endswith('/' + name) for path in everything)]
    assert missing == []


def test_model_zoo_matches_metafile_and_configs():
    """configs/dynamixer/README.md names every config of configs/dynamixer and configs/resnet, names none that is
    gone, and its model table gives each metafile model's parameters, FLOPs and top-1 on that model's row."""
    zoo = read('configs/dynamixer/README.md')
    configs = [p for folder in ('dynamixer', 'resnet') for p in (REPO / 'configs' / folder).glob('*.py')]
    named = set(re.findall(r'[\w.-]+\.py\b', zoo))
    assert sorted(p.name for p in configs if p.name not in named) == []
    # The configs it points at: link targets and paths under configs/ (the release's own files are named too).
    pointed = (re.findall(r'\]\(([\w./-]+\.py)\)', zoo)
               + re.findall(r'`((?:configs/|_base_/|dynamixer/)[\w./-]+\.py)`', zoo))
    folder = REPO / 'configs/dynamixer'
    assert [p for p in pointed if not any((root / p).is_file() for root in (folder, REPO, REPO / 'configs'))] == []
    metafile = yaml.safe_load(read('configs/dynamixer/metafile.yml'))
    for model in metafile['Models']:
        config_name = model['Config'].rsplit('/', 1)[-1]
        row = next((line for line in zoo.splitlines() if line.startswith('|') and config_name in line), None)
        assert row is not None, f'no table row for {model["Name"]}'
        cells = [cell.strip() for cell in row.strip('|').split('|')]
        assert f'{model["Metadata"]["Parameters"] / 1e6:.2f}' in cells, (model['Name'], row)
        assert f'{model["Metadata"]["FLOPs"] / 1e9:.2f}' in cells, (model['Name'], row)
        assert str(model['Results'][0]['Metrics']['Top 1 Accuracy']) in cells, (model['Name'], row)
        assert (REPO / model['Config']).is_file()


def test_tools_page_names_every_tool():
    """docs/tools.md names every script under tools/ (a new tool gets a line there)."""
    page = read('docs/tools.md')
    scripts = [path.name for path in (REPO / 'tools').rglob('*')
               if path.suffix in ('.py', '.sh') and '__pycache__' not in path.parts]
    assert sorted(name for name in scripts if f'`{name}`' not in page) == []
