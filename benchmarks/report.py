"""Run every benchmark and write docs/benchmarks.md (tables, PNG charts, the machine).

Runs each ``benchmarks/*_bench.py`` that exists, one after the other (a fixed order: rollout,
lag, copy, fdw, trigger, compare; unknown ones after, by name), as

    python benchmarks/<x>_bench.py [--quick] --json FILE

collects the JSON results (the convention of benchmarks/common.py) and renders one markdown
document with a summary of the goals at the top, then a section per benchmark (its description,
table, charts, goal and notes). A benchmark that fails (non-zero exit, no or invalid JSON,
timeout) is reported in the document as failed with the end of its error output; the report
then exits with status 1 after writing the document.

    ./dev bench                       # full sizes -> docs/benchmarks.md, docs/benchmarks/*.png
    ./dev bench --quick               # smoke run (small sizes) -> a temporary directory
    .venv/bin/python benchmarks/report.py --quick --only compare,fdw --output /tmp/b/bench.md

Charts are written next to the document, in ``<output dir>/benchmarks/*.png`` (matplotlib, from
requirements-bench.txt, which ``./dev bench`` installs). A ``--quick`` run never writes the
committed docs/benchmarks.md unless ``--output`` says so.
"""
import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from common import ROOT, load_average, machine_info, markdown_table, validate, write_json

ORDER = ('rollout', 'lag', 'copy', 'fdw', 'trigger', 'compare')
DEFAULT_OUTPUT = os.path.join(ROOT, 'docs', 'benchmarks.md')
ERROR_TAIL = 40  # lines of a failed benchmark's output shown in the document


def discover(only=None):
    """Benchmark names in run order (``fdw`` for benchmarks/fdw_bench.py)."""
    names = [os.path.basename(p)[:-len('_bench.py')]
             for p in glob.glob(os.path.join(ROOT, 'benchmarks', '*_bench.py'))]
    known = [n for n in ORDER if n in names]
    names = known + sorted(n for n in names if n not in ORDER)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit('no such benchmark: %s (have: %s)'
                             % (', '.join(unknown), ', '.join(names)))
        names = [n for n in names if n in only]
    return names


def tail(text, lines=ERROR_TAIL):
    return '\n'.join(text.rstrip().splitlines()[-lines:])


def run_benchmark(name, quick, timeout, logdir):
    """Run one benchmark; returns a dict: name, ok, seconds, result or error, log path."""
    script = os.path.join(ROOT, 'benchmarks', '%s_bench.py' % name)
    json_path = os.path.join(logdir, '%s.json' % name)
    log_path = os.path.join(logdir, '%s.log' % name)
    cmd = [sys.executable, script] + (['--quick'] if quick else []) + ['--json', json_path]
    shown = ' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd[1:])
    print('=== %s: %s' % (name, shown), file=sys.stderr, flush=True)
    entry = {'name': name, 'ok': False, 'command': 'python benchmarks/%s_bench.py%s --json FILE'
             % (name, ' --quick' if quick else ''), 'log': log_path}
    start = time.time()
    output = []
    with open(log_path, 'w') as log:
        try:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, universal_newlines=True)
        except OSError as e:
            entry.update(seconds=time.time() - start, error='could not start: %s' % e)
            return entry

        def pump():
            # stream the output (progress for the person waiting) into the log as well
            for line in proc.stdout:
                output.append(line)
                log.write(line)
                sys.stderr.write('  | ' + line)
        reader = threading.Thread(target=pump)
        reader.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            # SIGINT first: the script's finally blocks stop its clusters
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        reader.join()
    entry['seconds'] = time.time() - start
    text = ''.join(output)
    if timed_out:
        entry['error'] = 'timed out after %d s\n%s' % (timeout, tail(text))
        return entry
    if rc != 0:
        entry['error'] = 'exit status %d\n%s' % (rc, tail(text))
        return entry
    try:
        with open(json_path) as f:
            result = json.load(f)
        validate(result)
    except (OSError, ValueError) as e:
        entry['error'] = 'no valid JSON result (%s)\n%s' % (e, tail(text))
        return entry
    entry.update(ok=True, result=result)
    return entry


def earlier_result(name, path):
    """An entry from the JSON result of an earlier, separate run (``--result NAME=FILE``)."""
    entry = {'name': name, 'ok': False, 'seconds': 0, 'earlier': True,
             'command': 'python benchmarks/%s_bench.py --json FILE, run separately '
                        '(result rendered from %s)' % (name, os.path.relpath(path, ROOT)
                                                       if path.startswith(ROOT) else path)}
    try:
        with open(path) as f:
            result = json.load(f)
        validate(result)
    except (OSError, ValueError) as e:
        entry['error'] = 'no valid JSON result in %s (%s)' % (path, e)
        return entry
    entry['command'] += ', measured %s' % (result.get('measured_at') or time.strftime(
        '%Y-%m-%d %H:%M UTC', time.gmtime(os.path.getmtime(path))))
    entry.update(ok=True, result=result)
    return entry


def keep_results(entries, result_dir):
    """Copy the JSON result of each benchmark this run measured to ``result_dir``/NAME.json,
    so that a later document can render it again (``--result NAME=FILE``)."""
    os.makedirs(result_dir, exist_ok=True)
    for e in entries:
        if e['ok'] and not e.get('earlier'):
            write_json(os.path.join(result_dir, '%s.json' % e['name']), e['result'])


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------

def command_output(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def postgresql_versions():
    found = []
    for path in sorted(glob.glob('/usr/lib/postgresql/*/bin/postgres'),
                       key=lambda p: int(p.split('/')[4])):
        out = command_output([path, '--version'])
        if out:
            found.append(out.replace('postgres (PostgreSQL) ', ''))
    return ', '.join(found) or 'not found'


def ansible_core_version():
    out = command_output([os.path.join(os.path.dirname(sys.executable), 'ansible'), '--version'])
    match = re.search(r'core ([0-9][^\]\s]*)', out)
    return match.group(1) if match else 'not found'


def describe_machine():
    info = machine_info()
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
    try:
        from pgcluster import pg_bindir  # pylint: disable=import-outside-toplevel
        used = command_output([os.path.join(pg_bindir(), 'postgres'), '--version'])
        used = used.replace('postgres (PostgreSQL) ', '')
    except (ImportError, RuntimeError):
        used = 'not found'
    return [('CPU', info['cpu']), ('cores', info['cores']), ('RAM', info['ram']),
            ('kernel', info['kernel']), ('OS', info['os']),
            ('PostgreSQL (throw-away clusters)', used),
            ('PostgreSQL installed', postgresql_versions()),
            ('ansible-core', ansible_core_version()), ('Python', info['python']),
            ('date', info['date'])]


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------

def render_chart(spec, path):
    """Draw one chart (bar, barh or line) with matplotlib (Agg) into ``path``."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    labels = spec['labels']
    series = list(spec['series'].items())
    kind = spec.get('kind', 'bar')
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) * len(series) + 1.5)
                           if kind == 'barh' else (max(6, 1.1 * len(labels) + 2), 4.5))
    positions = list(range(len(labels)))
    if kind == 'line':
        for legend, values in series:
            ax.plot(positions, [float('nan') if v is None else v for v in values], marker='o',
                    label=legend)
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, rotation=20, ha='right')
        ax.set_ylabel(spec.get('ylabel') or '')
    else:
        width = 0.8 / len(series)
        for i, (legend, values) in enumerate(series):
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            vals = [0 if v is None else v for v in values]
            bars = (ax.barh if kind == 'barh' else ax.bar)(offsets, vals, width, label=legend)
            ax.bar_label(bars, labels=['-' if v is None else '%.2g' % v for v in values],
                         fontsize=8, padding=2)
        if kind == 'barh':
            ax.set_yticks(positions)
            ax.set_yticklabels(labels)
            ax.invert_yaxis()
            ax.set_xlabel(spec.get('ylabel') or '')
        else:
            ax.set_xticks(positions)
            ax.set_xticklabels(labels, rotation=20 if len(labels) > 3 else 0,
                               ha='right' if len(labels) > 3 else 'center')
            ax.set_ylabel(spec.get('ylabel') or '')
        if 'ratio' in (spec.get('ylabel') or ''):
            (ax.axvline if kind == 'barh' else ax.axhline)(1.0, color='grey', linewidth=0.8,
                                                           linestyle='--')
    ax.set_title(spec.get('title') or '', fontsize=11)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_charts(entries, chart_dir):
    """Write every chart; returns {(benchmark, index): relative file name} and problems."""
    files = {}
    problems = []
    try:
        import matplotlib  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return files, ['charts not drawn: matplotlib is not installed '
                       '(pip install -r requirements-bench.txt; ./dev bench does it)']
    os.makedirs(chart_dir, exist_ok=True)
    used = set()
    for entry in entries:
        if not entry['ok']:
            continue
        for i, spec in enumerate(entry['result']['charts']):
            name = spec['file']
            if name in used:
                name = '%s-%s' % (entry['name'], name)
            used.add(name)
            try:
                render_chart(spec, os.path.join(chart_dir, name))
            except Exception as e:  # pylint: disable=broad-except
                problems.append('chart %s of %s not drawn: %s' % (spec['file'], entry['name'], e))
                continue
            files[(entry['name'], i)] = name
    return files, problems


# --------------------------------------------------------------------------------------------
# Document
# --------------------------------------------------------------------------------------------

STATUS = {True: 'met', False: '**missed**', None: 'not judged'}


def summary_rows(entries):
    rows = []
    for e in entries:
        if not e['ok']:
            rows.append([e['name'], '-', '**FAILED** (see below)', '%.0f' % e.get('seconds', 0)])
            continue
        r = e['result']
        rows.append(['[%s](#%s)' % (r['title'], anchor(r['title'])), r['goal'] or '-',
                     STATUS[r['goal_met']] if r['goal'] else '-', '%.0f' % e['seconds']])
    return rows


def anchor(title):
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r'[^\w\- ]', '', title.strip().lower())
    return text.replace(' ', '-')


def render(entries, machine, chart_files, chart_dir_rel, problems, args, started, loads):
    out = []
    w = out.append
    w('# Benchmarks')
    w('')
    w('Generated by `%s` (benchmarks/report.py) on %s%s. Every figure is a ratio to a baseline '
      'measured in the same run, on the same machine; absolute times are shown for scale only. '
      'Each benchmark starts its own throw-away PostgreSQL servers on this machine (see its '
      'description) and runs after the previous one has finished.'
      % ('./dev bench --quick' if args.quick else './dev bench', machine[-1][1],
         ' — **a `--quick` smoke run: small sizes, the figures are not meaningful**'
         if args.quick else ''))
    w('')
    earlier = [e['name'] for e in entries if e.get('earlier')]
    if earlier:
        w('**Not one run**: the results of %s come from separate earlier runs of their scripts '
          '(named under each section, each with its own machine load in its notes), rendered '
          'here with `--result`; their run times below are 0. Regenerate everything in one run '
          'with `./dev bench`.' % ', '.join(earlier))
        w('')
    w('## Summary')
    w('')
    w(markdown_table(['benchmark', 'goal', 'result', 'run time (s)'], summary_rows(entries)))
    w('')
    failed = [e['name'] for e in entries if not e['ok']]
    if failed:
        w('Failed: %s.' % ', '.join(failed))
        w('')
    w('## Machine')
    w('')
    w(markdown_table(['', ''], machine))
    w('')
    w('Load average (1/5/15 min) at the start: %s; at the end: %s. The machine may be shared; '
      'the benchmarks measure their cases round-robin and report ratios to the baseline of the '
      'same run so that load slows baseline and case alike.' % loads)
    w('')
    for note in problems:
        w('- %s' % note)
    if problems:
        w('')
    for e in entries:
        if not e['ok']:
            w('## %s (FAILED)' % e['name'])
            w('')
            w('`%s` failed after %.0f s:' % (e['command'], e.get('seconds', 0)))
            w('')
            w('```')
            w(e.get('error', 'unknown error').replace('```', "'''"))
            w('```')
            w('')
            continue
        r = e['result']
        w('## %s' % r['title'])
        w('')
        w(r['description'].strip())
        w('')
        w(markdown_table(r['columns'], r['rows']))
        w('')
        for i, spec in enumerate(r['charts']):
            name = chart_files.get((e['name'], i))
            if name:
                w('![%s](%s/%s)' % (spec.get('title') or name, chart_dir_rel, name))
                w('')
        if r['goal']:
            w('**Goal**: %s — %s.' % (r['goal'], STATUS[r['goal_met']]))
            w('')
        for note in r['notes']:
            w('- %s' % note)
        w('')
        w('Command: `%s` (%.0f s).' % (e['command'], e['seconds']))
        w('')
    w('---')
    w('Total run time: %.0f s.' % (time.time() - started))
    return '\n'.join(out) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='smoke run: small sizes; the '
                        'document goes to a temporary directory unless --output is given')
    parser.add_argument('--output', help='the markdown file (default docs/benchmarks.md; '
                        'a temporary directory with --quick); charts go to <its dir>/benchmarks/')
    parser.add_argument('--only', help='comma-separated benchmark names (default: all)')
    parser.add_argument('--timeout', type=int, default=None,
                        help='seconds per benchmark (default 5400; 900 with --quick)')
    parser.add_argument('--result', action='append', default=[], metavar='NAME=FILE',
                        help='render the JSON result of an earlier separate run of '
                        'benchmarks/NAME_bench.py instead of running it (repeatable); the '
                        'document says so')
    args = parser.parse_args()
    only = [n.strip() for n in args.only.split(',') if n.strip()] if args.only else None
    names = discover(only)
    if args.output:
        output = os.path.abspath(args.output)
    elif args.quick:
        output = os.path.join(tempfile.mkdtemp(prefix='tablesync-bench-'), 'benchmarks.md')
    else:
        output = DEFAULT_OUTPUT
    timeout = args.timeout or (900 if args.quick else 5400)
    out_dir = os.path.dirname(output)
    chart_dir = os.path.join(out_dir, 'benchmarks')
    logdir = tempfile.mkdtemp(prefix='tablesync-bench-logs-')

    started = time.time()
    load_start = load_average()
    machine = describe_machine()
    print('benchmarks: %s; logs in %s' % (', '.join(names) or 'none', logdir), file=sys.stderr)
    given = dict(r.split('=', 1) for r in args.result)
    entries = [earlier_result(name, given[name]) if name in given
               else run_benchmark(name, args.quick, timeout, logdir) for name in names]
    chart_files, problems = render_charts(entries, chart_dir)
    keep_results(entries, os.path.join(chart_dir, 'results'))
    text = render(entries, machine, chart_files, os.path.relpath(chart_dir, out_dir), problems,
                  args, started, (load_start, load_average()))
    os.makedirs(out_dir, exist_ok=True)
    with open(output, 'w') as f:
        f.write(text)
    print('\nwrote %s (charts in %s)' % (output, chart_dir), file=sys.stderr)
    for e in entries:
        state = 'ok' if e['ok'] else 'FAILED'
        goal = '' if not e['ok'] else ' goal %s' % STATUS[e['result']['goal_met']].strip('*')
        print('  %-10s %-6s %5.0f s%s' % (e['name'], state, e.get('seconds', 0), goal),
              file=sys.stderr)
    for p in problems:
        print('  ' + p, file=sys.stderr)
    return 1 if any(not e['ok'] for e in entries) else 0


if __name__ == '__main__':
    sys.exit(main())
