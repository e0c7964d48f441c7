"""Plots of training runs from their save_dir/train_log.jsonl (written by the trainer's RunLog).

One figure, two panels: every loss term over iterations ("Train" records) and val mIoU
("Evaluate" records), one colour per run.

It imports neither paddle nor paddleseg_ext, and slim.benchmark's package imports nothing,
so plotting (tools/plot_run.py) needs matplotlib only.
"""

import json
import math
import os
import sys

# Train-record keys that are not loss terms (RunLog writes the terms next to these), and
# name endings of the same kind (timings, utilisation, memory).
NON_LOSS_KEYS = (
    'iter',
    'tag',
    'lr',
    'batch_cost',
    'reader_cost',
    'ips',
    'cpu_util',
    'epoch',
    'eta',
    'memory',
    'max_memory',
)
NON_LOSS_SUFFIXES = ('_cost', '_util', '_time', '_mem', '_memory', '_ms', '_s')
LOG_NAME = 'train_log.jsonl'


class RunLogError(ValueError):
    """A run folder or its log that cannot be plotted; the message is one line."""


def read_run_log(run_dir):
    """{'Train': {iter: record}, 'Evaluate': {iter: record}} of run_dir/train_log.jsonl.

    A resumed run appends to the same file; the last record of an iteration wins. Lines that
    are not records (cut off by a crash or while being written) are skipped with a warning.
    """
    path = run_dir if run_dir.endswith('.jsonl') else os.path.join(run_dir, LOG_NAME)
    if not os.path.isfile(path):
        raise RunLogError(
            f"'{path}' does not exist: pass a training --save_dir (it holds {LOG_NAME})"
        )
    records = {'Train': {}, 'Evaluate': {}}
    damaged = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                iteration = int(record['iter'])
                tag = record['tag']
            except (ValueError, KeyError, TypeError):
                damaged.append(line_no)
                continue
            if tag in records:
                records[tag][iteration] = record
    if damaged:
        print(
            f'warning: {path}: skipped {len(damaged)} line(s) that are not log records '
            f'(line {", ".join(map(str, damaged[:5]))})',
            file=sys.stderr,
        )
    if not records['Train'] and not records['Evaluate']:
        raise RunLogError(
            f"'{path}' has no Train or Evaluate records yet: train for at "
            f'least --log_iters iterations'
        )
    return records


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _losses(record):
    """{term: value} of a Train record: its 'losses' mapping where it has one, else every
    numeric key that is not a known non-loss key."""
    if isinstance(record.get('losses'), dict):
        return {k: v for k, v in record['losses'].items() if _number(v)}
    return {
        k: v
        for k, v in record.items()
        if _number(v) and k not in NON_LOSS_KEYS and not k.endswith(NON_LOSS_SUFFIXES)
    }


def _series(records, key, values=lambda record: record):
    points = sorted(
        (it, values(rec)[key]) for it, rec in records.items() if _number(values(rec).get(key))
    )
    return [p[0] for p in points], [p[1] for p in points]


def loss_terms(train_records):
    """Loss term names in first-seen order ('loss', the total, first)."""
    names = []
    for record in train_records.values():
        names += [key for key in _losses(record) if key not in names]
    return sorted(names, key=lambda name: name != 'loss')


def run_labels(run_dirs):
    """Folder names, or the paths as given where two runs share a folder name."""
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    return [name if names.count(name) == 1 else d for name, d in zip(names, run_dirs)]


def plot_runs(run_dirs, out_path, title=None):
    """Writes the two-panel figure for run_dirs to out_path (PNG); returns out_path."""
    if not run_dirs:
        raise RunLogError('no run folder given: pass one or more training --save_dir folders')
    runs = [(label, read_run_log(d)) for label, d in zip(run_labels(run_dirs), run_dirs)]
    out_dir = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise RunLogError(f"--out folder '{out_dir}' cannot be created ({exc.strerror})") from None

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    styles = ['-', '--', ':', '-.']
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(13, 4.8))
    any_eval = False
    for index, (label, records) in enumerate(runs):
        color = colors[index % len(colors)]
        for term_index, term in enumerate(loss_terms(records['Train'])):
            xs, ys = _series(records['Train'], term, _losses)
            ax_loss.plot(
                xs,
                ys,
                color=color,
                linestyle=styles[term_index % len(styles)],
                linewidth=1.8 if term == 'loss' else 1.2,
                label=f'{label}: {term}',
            )
        xs, ys = _series(records['Evaluate'], 'mIoU')
        if xs:
            any_eval = True
            best = max(range(len(ys)), key=ys.__getitem__)
            ax_miou.plot(
                xs,
                ys,
                color=color,
                marker='o',
                markersize=4,
                label=f'{label} (best {ys[best]:.4f} @ {xs[best]})',
            )
    ax_loss.set_title('Training loss terms')
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('loss')
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    ax_miou.set_title('Validation mIoU')
    ax_miou.set_xlabel('iteration')
    ax_miou.set_ylabel('mIoU')
    ax_miou.grid(alpha=0.3)
    if any_eval:
        ax_miou.legend(fontsize=8)
    else:
        ax_miou.text(
            0.5,
            0.5,
            'no Evaluate records\n(train with --do_eval)',
            ha='center',
            va='center',
            transform=ax_miou.transAxes,
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
