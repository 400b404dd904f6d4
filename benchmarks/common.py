"""Shared helpers for the benchmark scripts (benchmarks/*_bench.py).

Every benchmark script follows one convention so that ``benchmarks/report.py`` (``./dev bench``)
can run it and render ``docs/benchmarks.md``:

    python benchmarks/<x>_bench.py [--quick] --json FILE

prints its table to stdout and, with ``--json``, writes one JSON object (see ``make_result``):

    {"name": "compare", "title": "...", "description": "markdown",
     "columns": ["case", ...], "rows": [[...], ...],
     "goal": "text or null", "goal_met": true/false/null,
     "charts": [{"file": "compare.png", "kind": "bar", "title": "...", "labels": [...],
                 "series": {"legend name": [numbers]}, "ylabel": "ratio to baseline"}],
     "notes": ["..."]}

Usage in a script::

    from common import add_standard_arguments, make_result, chart, print_table, write_json
    parser = argparse.ArgumentParser(...)
    add_standard_arguments(parser)          # --quick, --json FILE
    args = parser.parse_args()
    ...
    result = make_result('compare', 'Title', 'What is measured, what the baseline is',
                         ['case', 'seconds', 'ratio to baseline'], rows,
                         goal='compare <= 2x baseline', goal_met=True,
                         charts=[chart('compare.png', 'Title', labels, {'ratio': ratios})],
                         notes=['...'])
    print_table(result)
    write_json(args.json, result)

This module is imported by scripts other people maintain: keep its functions backwards
compatible (add, do not change signatures).
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART_KINDS = ('bar', 'barh', 'line')


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_standard_arguments(parser):
    """Add ``--quick`` (a smoke run with small sizes) and ``--json FILE`` to an argparse parser."""
    parser.add_argument('--quick', action='store_true',
                        help='smoke run with small sizes (figures are not meaningful)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the result as JSON (for benchmarks/report.py)')
    return parser


def setup_paths():
    """Make tests/integration (pgcluster, runner) and the collection importable."""
    for path in (os.path.join(ROOT, '.cache', 'collections'), ROOT,
                 os.path.join(ROOT, 'tests', 'integration')):
        if path not in sys.path:
            sys.path.insert(0, path)


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

def chart(file, title, labels, series, ylabel='ratio to baseline', kind='bar'):
    """One chart description: ``series`` maps a legend name to one number per label."""
    return {'file': file, 'kind': kind, 'title': title, 'labels': list(labels),
            'series': dict((str(k), [None if v is None else float(v) for v in vals])
                           for k, vals in series.items()),
            'ylabel': ylabel}


def make_result(name, title, description, columns, rows, goal=None, goal_met=None, charts=(),
                notes=()):
    """The JSON object a benchmark writes (validated)."""
    result = {'name': name, 'title': title, 'description': description,
              'columns': [str(c) for c in columns], 'rows': [list(r) for r in rows],
              'goal': goal, 'goal_met': goal_met, 'charts': list(charts), 'notes': list(notes)}
    validate(result)
    return result


def validate(result):
    """Raise ValueError when ``result`` does not follow the convention."""
    problems = []
    for key, typ in (('name', str), ('title', str), ('description', str), ('columns', list),
                     ('rows', list), ('charts', list), ('notes', list)):
        if not isinstance(result.get(key), typ):
            problems.append('%s must be a %s' % (key, typ.__name__))
    if result.get('goal') is not None and not isinstance(result['goal'], str):
        problems.append('goal must be a string or null')
    if result.get('goal_met') not in (True, False, None):
        problems.append('goal_met must be true, false or null')
    width = len(result.get('columns') or ())
    for i, row in enumerate(result.get('rows') or ()):
        if not isinstance(row, list) or len(row) != width:
            problems.append('row %d must be a list of %d cells' % (i, width))
    for i, c in enumerate(result.get('charts') or ()):
        if not isinstance(c, dict):
            problems.append('chart %d must be an object' % i)
            continue
        if not isinstance(c.get('file'), str) or not c['file'].endswith('.png') \
                or os.path.basename(c['file']) != c['file']:
            problems.append('chart %d: file must be a plain *.png file name' % i)
        if c.get('kind', 'bar') not in CHART_KINDS:
            problems.append('chart %d: kind must be one of %s' % (i, ', '.join(CHART_KINDS)))
        labels = c.get('labels')
        if not isinstance(labels, list) or not isinstance(c.get('series'), dict) or not c['series']:
            problems.append('chart %d: labels (list) and series (non-empty object) are required' % i)
            continue
        for legend, values in c['series'].items():
            if not isinstance(values, list) or len(values) != len(labels):
                problems.append('chart %d: series %r must have one value per label' % (i, legend))
    if problems:
        raise ValueError('benchmark result does not follow the convention: ' + '; '.join(problems))


def write_json(path, result):
    """Validate and write ``result`` to ``path`` (nothing when ``path`` is None), stamped with
    the time it was measured (``measured_at``, UTC) unless it has one."""
    validate(result)
    if not path:
        return
    result.setdefault('measured_at', time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write('\n')
    os.replace(tmp, path)


def cell(value):
    """A table cell as text (floats with 3 significant decimals)."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return '%.3f' % value if abs(value) < 100 else '%.1f' % value
    return str(value)


def markdown_table(columns, rows):
    lines = ['| %s |' % ' | '.join(str(c) for c in columns),
             '|%s|' % '|'.join('---' for _c in columns)]
    for row in rows:
        lines.append('| %s |' % ' | '.join(cell(v).replace('|', '\\|') for v in row))
    return '\n'.join(lines)


def print_table(result, out=None):
    """Print title, table, goal and notes of a result (the human-readable stdout)."""
    out = out or sys.stdout
    print('## %s' % result['title'], file=out)
    print(file=out)
    print(markdown_table(result['columns'], result['rows']), file=out)
    if result.get('goal'):
        met = {True: 'met', False: 'MISSED', None: 'not judged'}[result.get('goal_met')]
        print('\ngoal: %s -> %s' % (result['goal'], met), file=out)
    for note in result.get('notes') or ():
        print('note: %s' % note, file=out)
    out.flush()


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def timed(fn, *args, **kwargs):
    """(seconds, return value) of one call."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def ratio(value, baseline):
    return value / baseline if baseline else None


def load_average():
    try:
        return ' / '.join('%.1f' % v for v in os.getloadavg())
    except OSError:
        return 'n/a'


def machine_info():
    """The machine as a dict of short strings (cpu, cores, ram, kernel, os, python, date)."""
    info = {'cpu': 'unknown', 'cores': str(os.cpu_count() or '?'), 'ram': '?',
            'kernel': '%s %s' % (platform.system(), platform.release()),
            'os': platform.platform(), 'python': platform.python_version(),
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        if names:
            info['cpu'] = names[0]
    except OSError:
        pass
    try:
        out = subprocess.run(['lscpu'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, check=False).stdout
        fields = dict((k.strip(), v.strip()) for k, v in
                      (line.split(':', 1) for line in out.splitlines() if ':' in line))
        if fields.get('Hypervisor vendor'):
            info['cpu'] += ' (%s guest)' % fields['Hypervisor vendor']
    except OSError:
        pass
    try:
        with open('/proc/meminfo') as f:
            kb = int(f.readline().split()[1])
        info['ram'] = '%.1f GiB' % (kb / 1048576.0)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open('/etc/os-release') as f:
            rel = dict(line.rstrip('\n').split('=', 1) for line in f if '=' in line)
        info['os'] = rel.get('PRETTY_NAME', info['os']).strip('"')
    except OSError:
        pass
    return info


# Cluster settings for fair measurements: the throw-away test clusters log every statement.
QUIET_SETTINGS = (('log_statement', 'none'), ('log_min_messages', 'warning'))


def quiet(cluster, extra=()):
    """Switch statement logging off on a tests/integration/pgcluster.py Cluster (reload; settings
    in ``extra`` that need a restart take effect at the next restart)."""
    for name, value in tuple(QUIET_SETTINGS) + tuple(extra):
        cluster.execute('ALTER SYSTEM SET %s = %%s' % name, (value,))
    cluster.execute('SELECT pg_reload_conf()')
